"""Storage back ends shared by pipelines, extensions and launchers."""
