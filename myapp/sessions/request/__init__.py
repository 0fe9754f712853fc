"""A request's way through its session: the factory (``factory``: the cookie in, the
decision at the end of the request, the cookie out), the store side (``storeio``: which
store answers the load, where each write runs), and the session itself with its CSRF
token (``session``); a visitor without a stored session keeps flash messages in a cookie
(``flashcookie``); ``properties`` are the request properties the package adds."""
