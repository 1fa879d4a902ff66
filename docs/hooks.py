"""mkdocs hook: Sphinx cross-reference roles in docstrings (``:func:`x```) render as plain code.

mkdocstrings renders a docstring's ``:func:`fusion_spec.ops.linear``` as the text ``:func:`` followed
by the code ``fusion_spec.ops.linear``; this drops the role (and a leading ``~``/``.``, as Sphinx
shows it) so the page reads ``fusion_spec.ops.linear``. Not copied into the site (``exclude_docs``).
"""

import re

ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|obj|exc|const):(<code>)~?\.?([^<]*</code>)")


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(r"\1\2", html)
