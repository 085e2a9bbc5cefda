"""The front door: the HTTP API, the bulk loader and the writer into raw tables."""
