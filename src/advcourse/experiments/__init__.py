"""One module per chapter: the chapter's settings (a frozen ``Settings`` dataclass with ``FAST``
and ``FULL``), its trained models (cached) and its experiments as small functions.

A chapter imports its own module, e.g. ``from advcourse.experiments import ch04_pgd_saddle_point
as sp``; these modules never import one another (shared code lives in the layers below:
``attacks``, ``defenses``, ``models`` and the kit). They are not imported here, so importing
one chapter does not load the others.
"""
