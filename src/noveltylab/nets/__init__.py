"""Network building blocks shared by the methods (autoencoders, backbones, discriminators)."""
