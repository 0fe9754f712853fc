"""The session stores: the record and the base classes (``base``), each record's HMAC
(``authenticator``), one circuit breaker per store (``breaker``), and the stores. Their
names are mapped to builders in ``options.backends``."""
