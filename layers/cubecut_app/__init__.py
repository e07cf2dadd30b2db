"""cubecut's HTTP application on top of the library: the powertools resolver (:mod:`.app`),
its routes (:mod:`.routes`), who is calling (:mod:`.callers`), what runs bulk jobs
(:mod:`.jobs`), request parsing (:mod:`.forms`) and validation (:mod:`.models`), the
OpenAPI document (:mod:`.openapi`), log redaction (:mod:`.redact`), the web page (:mod:`.webpage`) and the typed settings
built at the edge (:mod:`.settings`).

The library (:mod:`cubecut`, notably :mod:`cubecut.tesscut`) knows nothing of HTTP, of
powertools or of the environment; this package is where requests become library calls.
"""
