"""The transformer roadmap's block kinds (``patch_embed``, ``class_token``,
``position_embedding``, ``transformer``): declared in :mod:`.transformer` (fields, checks,
diagrams: no torch, so a spec is checked at once) and built from :mod:`.layers` (torch,
imported when a block is first built)."""
