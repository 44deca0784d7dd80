"""The networks: the U-Net target and its training, the generator and critic, target loading."""
