"""The STUNet studio (Gradio): ``demo.app.build_demo()`` builds it; ``python app.py`` runs it.

Modules: ``app`` (the page and its events), ``studio`` (request handlers), ``files`` (output
folder, pruning), ``sessions`` (session records, example cache), ``figures`` (recording ->
figure), ``style`` (CSS), ``about``, ``limits`` (every limit, with the server-side checks;
sampling defaults come from ``stunet.defaults``), ``errors`` (the error policy), ``guard``.
Importing this package is cheap: ``demo.app.demo`` builds the page from the checkpoint's header
and loads the model in the background.
"""
