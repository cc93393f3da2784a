"""Hugging Face ``transformers`` support: the configuration, model and feature-extractor
classes (which import transformers), the remote code an exported folder carries
(``remote_code.py``) and the reader of such a folder (``folder.py``). Exporting:
``mae-ast-export-hf`` (``mae_ast/tools/export_hf.py``)."""
