"""The bodies of the pipeline's steps, as plain typed functions.

`pipeline/components.py` wraps each in a lightweight KFP component; the functions run inside
the trainer image (or a kfp.local subprocess) and import `model/` lazily, so that importing
`pipeline` in the bot never loads torch.
"""
