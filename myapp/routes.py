"""URL routes of the site."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_static_view("static", "myapp:static", cache_max_age=3600)
    config.add_route("favicon", "/favicon.ico")
    config.add_route("home", "/")
    config.add_route("signin", "/signin")
    config.add_route("signout", "/signout")
    config.add_route("signup", "/signup")
    config.add_route("cart", "/cart")
    config.add_route("cart_add", "/cart/add")
    config.add_route("cart_update", "/cart/update")
    config.add_route("cart_remove", "/cart/remove")
    config.add_route("checkout", "/checkout")
    config.add_route("orders", "/orders")
    config.add_route("order", r"/orders/{order_id:\d{1,9}}")
    config.add_route("account_sessions", "/account/sessions")
    config.add_route("account_sessions_end", "/account/sessions/end")
    config.add_route("account_sessions_end_others", "/account/sessions/end-others")
