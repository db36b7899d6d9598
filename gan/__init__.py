"""StyleGAN2-style generator training and sampling against a ResNet or ViT discriminator."""
