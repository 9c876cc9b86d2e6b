"""The rankers, one module each; every module here is imported and registers itself (see ``..ranker``)."""
