"""What devices and the CA exchange: the signed documents and the CMS helpers both sides use."""
