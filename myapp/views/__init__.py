"""The site's views."""
