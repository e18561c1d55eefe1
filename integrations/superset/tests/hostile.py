"""Claim values that try to break out of a rendered clause."""

HOSTILE_DEPARTMENTS = [
    "x' OR '1'='1",
    "Sales' --",
    "Sales'); DELETE FROM sales; --",
    "{{ 7*7 }}",
    "{{ config }}",
    "{% if true %}Sales{% endif %}",
    "{# hidden #}Sales",
    ":name",
    "Sales :department",
    "%(department)s %s",
    "back\\slash\\",
    "\\' OR 1=1 --",
    "/* comment */ Sales",
    "new\nline\r\n",
    "Zürich ✓ 東京",
    "'" * 40,
    "x" * 1500,
]
