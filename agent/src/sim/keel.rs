//! Keel's own policies: one host agent per host, negotiating migrations in LCC.
