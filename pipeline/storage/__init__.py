"""Files on disk: the dataset schema (``names``, ``dataset``), atomic writes (``write``), checked
reads (``read``), part files read as one sweep (``parts``) and what a result was computed from
(``provenance``)."""
