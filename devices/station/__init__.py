"""The enrolment station: the counter workflow between a card in a reader and the CA's REST API."""
