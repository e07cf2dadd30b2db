"""The TESScut service logic, free of any HTTP framework: request semantics and TESScut's
answers (:mod:`.protocol`), cutouts of the cubes :mod:`cubecut.cube.catalog` finds,
delivered as cached zips (:mod:`.service`), moving targets (:mod:`.moving`), quick-look pictures
(:mod:`.quicklook`), the MAST portal calls lightkurve makes (:mod:`.mast`), target names
(:mod:`.names`), cubecut's own /v1 operations (:mod:`.v1`) and bounded JSON
(:mod:`.jsontext`).

Everything here takes plain arguments (a catalog, a service, settings values): the HTTP
application :mod:`cubecut_app` parses requests into them and turns answers and named
errors into responses.
"""
