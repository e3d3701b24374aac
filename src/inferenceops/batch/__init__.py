"""The Batch API's foundation: the Files API (issue #12, item 1). Batches build on it next.

    multipart.py   streaming multipart/form-data parser (pure)
    file_lines.py  what a batch input file's lines must hold, checked as they stream (pure)
    files.py       the files folder: partial uploads, atomic commit, reads in pieces
    upload.py      one POST /v1/files body → a checked file in .partial/, or a refusal
    service.py     upload / list / retrieve / content / delete for one owner (the store)
    routes.py      the /v1/files ASGI application (auth, batch scope, OpenAI shapes)

Not the hot path: it reads and writes the store, and is imported only when a process
first serves ``/v1/files`` (``app.files_on_demand``). This ``__init__`` imports nothing,
so importing one module does not load the others.
"""
