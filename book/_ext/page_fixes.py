"""A Sphinx extension: two fixes to the pages the theme writes, each found by the browser tests.

- Each page includes each script once. sphinx-thebe registers its configuration script whenever
  Sphinx reads the sources, and the book's build reads them more than once, so every page declared
  ``const THEBE_JS_URL`` twice and the browser stopped with "Identifier 'THEBE_JS_URL' has already
  been declared".
- The colour mode has a default. Without one the theme's first page view logs "Got invalid theme
  mode" to the console. (This theme version takes it as a template variable, not a theme option.)
"""


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # The file (None and "" both mean an inline script) and the attributes, which hold an inline body.
        key = (getattr(script, "filename", script) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def default_colour_mode(app, config):
    config.html_context.setdefault("default_mode", "auto")  # a template variable of the theme


def setup(app):
    app.connect("config-inited", default_colour_mode)
    app.connect("html-page-context", drop_repeated_scripts, priority=900)  # after the others have added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
