"""The COCO ids the detector emits; their canonical labels, and the classifier's, are in sightfleet/vocabulary.py."""
from __future__ import annotations

# The 90-id COCO label map of the TensorFlow detection models; the 10 unused ids
# (12, 26, 29, 30, 45, 66, 68, 69, 71, 83) are absent. Names in display form.
COCO_NAMES = {
    1: "Person", 2: "Bicycle", 3: "Car", 4: "Motorcycle", 5: "Airplane", 6: "Bus", 7: "Train",
    8: "Truck", 9: "Boat", 10: "Traffic light", 11: "Fire hydrant", 13: "Stop sign",
    14: "Parking meter", 15: "Bench", 16: "Bird", 17: "Cat", 18: "Dog", 19: "Horse", 20: "Sheep",
    21: "Cow", 22: "Elephant", 23: "Bear", 24: "Zebra", 25: "Giraffe", 27: "Backpack",
    28: "Umbrella", 31: "Handbag", 32: "Tie", 33: "Suitcase", 34: "Frisbee", 35: "Skis",
    36: "Snowboard", 37: "Sports ball", 38: "Kite", 39: "Baseball bat", 40: "Baseball glove",
    41: "Skateboard", 42: "Surfboard", 43: "Tennis racket", 44: "Bottle", 46: "Wine glass",
    47: "Cup", 48: "Fork", 49: "Knife", 50: "Spoon", 51: "Bowl", 52: "Banana", 53: "Apple",
    54: "Sandwich", 55: "Orange", 56: "Broccoli", 57: "Carrot", 58: "Hot dog", 59: "Pizza",
    60: "Donut", 61: "Cake", 62: "Chair", 63: "Couch", 64: "Potted plant", 65: "Bed",
    67: "Dining table", 70: "Toilet", 72: "TV", 73: "Laptop", 74: "Mouse", 75: "Remote",
    76: "Keyboard", 77: "Cell phone", 78: "Microwave", 79: "Oven", 80: "Toaster", 81: "Sink",
    82: "Refrigerator", 84: "Book", 85: "Clock", 86: "Vase", 87: "Scissors", 88: "Teddy bear",
    89: "Hair drier", 90: "Toothbrush",
}
