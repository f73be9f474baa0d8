"""What runs outside the CA: the card and its PC/SC client, the enrolment station, the reference
phone.
"""
