"""The web console: static pages served by Rapport itself, reading the HTTP APIs with a token."""
