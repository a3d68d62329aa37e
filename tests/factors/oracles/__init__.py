"""Independent pandas transcriptions used as test oracles for the factor libraries."""
