"""StyleGAN2-style generator training and sampling against a ResNet or ViT discriminator.

Modules: config (dataclasses + presets), nets/ (generator, resnet and vit discriminators, shared
layers), augment (ADA bgc pipeline), loss, train (Trainer + training loop), checkpoint
(safetensors + atomic writes), dataset (prepare/load image folders), sample (grids), api (public
loading/sampling API used by evalkit), cli (`gan ...`), avatars (built-in demo data).
"""
