"""The transformer roadmap's block kinds (``patch_embed``, ``class_token``,
``position_embedding``, ``transformer``), imported when a spec first uses one (they import
torch)."""
