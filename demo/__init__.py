"""The STUNet studio (Gradio): ``demo.app.build_demo()`` builds it; ``python app.py`` runs it.

Modules: ``limits`` (every limit and default, with the server-side checks), ``errors``
(the error policy), ``studio`` (handlers), ``views`` (recording -> figure), ``about``.
Importing this package is cheap: nothing loads a model until ``demo.app.demo`` is used.
"""
