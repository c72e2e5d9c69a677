"""Small helpers every stage shares: email normalisation, times, files, locks."""
