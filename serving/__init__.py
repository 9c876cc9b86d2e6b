"""TF Serving–compatible export, server and clients (see the export and serving issues)."""
