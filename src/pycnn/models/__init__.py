"""Model zoo (``pc.models``): classic CNNs with the layer sizes of their papers."""
from .alexnet import AlexNet, alexnet
from .densenet import DenseBlock, DenseLayer, DenseNet, Transition, densenet121
from .googlenet import GoogLeNet, Inception, googlenet
from .lenet import lenet5
from .mobilenet import MobileNetV1, mobilenet_v1
from .resnet import ResNet, resnet18
from .vgg import VGG, vgg11, vgg16

__all__ = ["lenet5", "alexnet", "vgg11", "vgg16", "resnet18", "mobilenet_v1", "googlenet", "densenet121",
           "AlexNet", "VGG", "ResNet", "MobileNetV1", "GoogLeNet", "Inception", "DenseNet", "DenseLayer",
           "DenseBlock", "Transition"]
