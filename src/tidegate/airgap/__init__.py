"""Air-gapped mirrors: prefetching a closure, carrying it in verified bundles, checking the cache."""
