"""Bad rows: the ``on_bad_rows`` policy (:mod:`.policy`, driver side) and the quarantine (:mod:`.quarantine`, replica
side)."""
