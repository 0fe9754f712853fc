"""A request's way through its session, in the order it meets them: the cookie in
(``cookie``), the load (``load``: which store answers), the session itself (``session``),
the decision at the end of the request (``factory``), where each write runs
(``writes``), and the cookie out; a visitor without a stored session keeps a CSRF token
(``csrf``) and flash messages (``flashcookie``) in cookies; ``properties`` are the
request properties the package adds."""
