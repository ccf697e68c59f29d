"""Hand curation of the vocabulary: which WordNet synsets become labels, their names, categories and thresholds.

GROUP: every ImageNet class below the synset (nearest anchor first) collapses into this one label,
because a person searches for "Dog", not for one of 118 breeds the classifier often confuses.
BROAD: the classes below keep their own readable name as a label, with this label as parent
("Banana" under "Fruit"). ROOT: like BROAD but the synset itself is too abstract to be a label.
Parents of an anchor come from WordNet (its nearest anchor above) unless PARENTS says otherwise.
"""
from __future__ import annotations

GROUP, BROAD, ROOT = "group", "broad", "root"

ANIMALS, FOOD, VEHICLES = "Animals and Pets", "Food and Beverage", "Vehicles and Automotive"
HOME, TECH, SPORTS = "Home and Indoors", "Technology and Computing", "Sports"
APPAREL, NATURE, PLANTS = "Apparel and Accessories", "Nature and Outdoors", "Plants and Flowers"
PEOPLE, BUILDINGS, TOOLS = "Person Description", "Buildings and Architecture", "Tools and Machinery"
EVERYDAY, MUSIC, WEAPONS = "Everyday Objects", "Hobbies and Interests", "Weapons and Military"
TOYS, KITCHEN, FURNITURE = "Toys and Gaming", "Kitchen and Dining", "Furniture and Furnishings"
TRANSPORT, OFFICE = "Transport and Logistics", "Work and Office"

# (WordNet id, canonical name, mode, categories (inherited from parents when empty), aliases)
ANCHORS = [
    # living things
    ("n00015388", "Animal", BROAD, (ANIMALS,), ("Animals", "Creature", "Wildlife")),
    ("n01861778", "Mammal", BROAD, (), ()),
    ("n01503061", "Bird", GROUP, (), ("Birds",)),
    ("n01604330", "Bird of Prey", GROUP, (), ("Raptor",)),
    ("n01621127", "Owl", GROUP, (), ()),
    ("n01613294", "Eagle", GROUP, (), ()),
    ("n01816887", "Parrot", GROUP, (), ("Macaw", "Cockatoo", "Lorikeet")),
    ("n01846331", "Duck", GROUP, (), ("Drake", "Mallard")),
    ("n01855672", "Goose", GROUP, (), ()),
    ("n01858441", "Swan", GROUP, (), ()),
    ("n02055803", "Penguin", GROUP, (), ()),
    ("n01514859", "Chicken", GROUP, (), ("Hen",)),
    ("n01514668", "Chicken", GROUP, (), ("Rooster", "Cock")),
    ("n02512053", "Fish", GROUP, (), ()),
    ("n01482330", "Shark", GROUP, (), ()),
    ("n01495701", "Ray", GROUP, (), ("Stingray", "Electric ray")),
    ("n01661091", "Reptile", BROAD, (), ()),
    ("n01726692", "Snake", GROUP, (), ("Serpent",)),
    ("n01674464", "Lizard", GROUP, (), ("Iguana", "Gecko", "Chameleon", "Agama")),
    ("n01662784", "Turtle", GROUP, (), ("Tortoise", "Terrapin")),
    ("n01697178", "Crocodile", GROUP, (), ()),
    ("n01698434", "Alligator", GROUP, (), ()),
    ("n01627424", "Amphibian", BROAD, (), ()),
    ("n01639765", "Frog", GROUP, (), ("Toad",)),
    ("n01629276", "Salamander", GROUP, (), ("Newt",)),
    ("n01905661", "Invertebrate", BROAD, (), ()),
    ("n02159955", "Insect", BROAD, (), ("Bug",)),
    ("n02274259", "Butterfly", GROUP, (), ()),
    ("n02164464", "Beetle", GROUP, (), ()),
    ("n01769347", "Arachnid", BROAD, (), ()),
    ("n01772222", "Spider", GROUP, (), ("Tarantula",)),
    ("n01974773", "Crustacean", BROAD, (), ()),
    ("n01976957", "Crab", GROUP, (), ()),
    ("n01982650", "Lobster", GROUP, (), ("Crayfish",)),
    ("n01940736", "Mollusk", BROAD, (), ("Mollusc", "Shellfish")),
    ("n02084071", "Dog", GROUP, (), ("Dogs", "Puppy", "Canis familiaris", "Hound")),
    ("n02121808", "Cat", GROUP, (), ("Cats", "Kitten", "Kitty", "House cat", "Domestic cat")),
    ("n02120997", "Feline", BROAD, (), ("Felid",)),
    ("n02127808", "Big Cat", BROAD, (), ()),
    ("n02083346", "Canine", BROAD, (), ("Canid",)),
    ("n02114100", "Wolf", GROUP, (), ()),
    ("n02118333", "Fox", GROUP, (), ()),
    ("n02131653", "Bear", GROUP, (), ()),
    ("n02469914", "Primate", BROAD, (), ()),
    ("n02484322", "Monkey", GROUP, (), ()),
    ("n02470325", "Ape", GROUP, (), ("Gorilla", "Chimpanzee", "Orangutan")),
    ("n02329401", "Rodent", BROAD, (), ()),
    ("n02355227", "Squirrel", GROUP, (), ()),
    ("n02324045", "Rabbit", GROUP, (), ("Bunny",)),
    ("n02370806", "Hoofed Mammal", BROAD, (), ("Ungulate",)),
    ("n02374451", "Horse", GROUP, (), ("Pony",)),
    ("n02402425", "Cattle", GROUP, (), ("Cow", "Cows", "Ox", "Bull")),
    ("n02411705", "Sheep", GROUP, (), ("Ram", "Lamb")),
    ("n02395406", "Pig", GROUP, (), ("Hog", "Swine")),
    ("n02062744", "Whale", GROUP, (), ()),
    ("n02437136", "Camel", GROUP, (), ("Dromedary",)),
    ("n01877134", "Kangaroo", GROUP, (), ("Wallaby",)),
    ("n02076196", "Seal", GROUP, (), ("Sea lion",)),
    ("n02503517", "Elephant", GROUP, (), ()),
    ("n00007846", "Person", GROUP, (PEOPLE,), ("People", "Human", "Man", "Woman", "Child")),
    ("n00017222", "Plant", BROAD, (PLANTS,), ()),
    ("n11669921", "Flower", GROUP, (), ("Blossom",)),
    ("n12992868", "Mushroom", GROUP, (PLANTS,), ("Fungus", "Fungi", "Toadstool")),
    # food
    ("n00021265", "Food", BROAD, (FOOD,), ()),
    ("n07555863", "Food", BROAD, (FOOD,), ()),
    ("n07881800", "Beverage", BROAD, (FOOD,), ("Drink",)),
    ("n07929519", "Coffee", GROUP, (), ("Espresso", "Cappuccino", "Latte")),
    ("n07679356", "Bread", GROUP, (), ()),
    ("n13134947", "Fruit", BROAD, (FOOD,), ()),
    ("n07707451", "Vegetable", BROAD, (), ("Veggie",)),
    ("n07557434", "Dish", BROAD, (), ("Meal",)),
    ("n07609840", "Dessert", BROAD, (), ()),
    ("n07695965", "Sandwich", BROAD, (), ()),
    # things
    ("n00021939", "", ROOT, (EVERYDAY,), ()),
    ("n04524313", "Vehicle", BROAD, (VEHICLES,), ()),
    ("n02958343", "Car", GROUP, (), ("Automobile", "Auto", "Motorcar")),
    ("n04490091", "Truck", GROUP, (), ("Lorry",)),
    ("n02924116", "Bus", GROUP, (), ("Coach",)),
    ("n04468005", "Train", GROUP, (TRANSPORT,), ("Railway",)),
    ("n03684823", "Train", GROUP, (TRANSPORT,), ()),
    ("n03895866", "Train", GROUP, (TRANSPORT,), ()),
    ("n02858304", "Boat", GROUP, (TRANSPORT,), ()),
    ("n04194289", "Ship", GROUP, (TRANSPORT,), ()),
    ("n02686568", "Aircraft", BROAD, (TRANSPORT,), ()),
    ("n02691156", "Airplane", GROUP, (), ("Plane", "Aeroplane", "Jet", "Airliner")),
    ("n02834778", "Bicycle", GROUP, (), ("Bike",)),
    ("n03790512", "Motorcycle", GROUP, (), ("Motorbike",)),
    ("n03785016", "Motorcycle", GROUP, (), ()),
    ("n03405725", "Furniture", BROAD, (FURNITURE,), ()),
    ("n03001627", "Chair", GROUP, (), ()),
    ("n02818832", "Bed", GROUP, (), ()),
    ("n04256520", "Couch", GROUP, (), ("Sofa",)),
    ("n02828884", "Bench", GROUP, (), ()),
    ("n03051540", "Clothing", BROAD, (APPAREL,), ("Clothes", "Apparel")),
    ("n03380867", "Footwear", GROUP, (APPAREL,), ("Shoe", "Shoes")),
    ("n03502509", "Hat", GROUP, (APPAREL,), ("Headwear", "Headgear", "Cap")),
    ("n03800933", "Musical Instrument", BROAD, (MUSIC,), ("Instrument",)),
    ("n03467517", "Guitar", GROUP, (), ()),
    ("n02942699", "Camera", GROUP, (TECH,), ()),
    ("n04451818", "Tool", BROAD, (TOOLS,), ()),
    ("n04565375", "Weapon", BROAD, (WEAPONS,), ()),
    ("n04285146", "Sports Equipment", BROAD, (SPORTS,), ()),
    ("n02778669", "Ball", BROAD, (SPORTS,), ()),
    ("n03278248", "Electronics", BROAD, (TECH,), ()),
    ("n03082979", "Computer", BROAD, (TECH,), ()),
    ("n03528263", "Home Appliance", BROAD, (HOME,), ("Appliance",)),
    ("n03621049", "Kitchen Utensil", BROAD, (KITCHEN,), ()),
    ("n04381994", "Tableware", BROAD, (KITCHEN,), ()),
    ("n02876657", "Bottle", GROUP, (KITCHEN,), ()),
    ("n03046257", "Clock", GROUP, (EVERYDAY,), ()),
    ("n04341686", "Structure", BROAD, (BUILDINGS,), ()),
    ("n02913152", "Building", BROAD, (BUILDINGS,), ()),
    ("n09287968", "Landscape", BROAD, (NATURE,), ("Scenery", "Nature", "Outdoors")),
    ("n03964744", "Toy", BROAD, (TOYS,), ()),
]

# Extra parents beyond WordNet's, as Rekognition files Cat and Dog under Pet too.
EXTRA_PARENTS = {"Bus": ("Vehicle",), "Train": ("Vehicle",), "Computer": ("Electronics",),
                 "Camera": ("Electronics",), "Fruit": ("Food",), "Cat": ("Pet",), "Dog": ("Pet",),
                 "Rabbit": ("Pet",), "Chicken": ("Poultry",),
                 "Big Cat": ("Wildlife",), "Bear": ("Wildlife",)}

# Labels no model class maps to but that the hierarchy or the detector needs: name -> (parents, categories)
EXTRA_LABELS = {
    "Pet": (("Animal",), (ANIMALS,)), "Poultry": (("Bird",), (ANIMALS,)), "Wildlife": (("Animal",), (ANIMALS,)),
    "Traffic Light": (("Road Sign",), (TRANSPORT,)), "Road Sign": ((), (TRANSPORT,)),
    "Stop Sign": (("Road Sign",), (TRANSPORT,)), "Fire Hydrant": ((), (TRANSPORT,)),
    "Parking Meter": ((), (TRANSPORT,)), "Giraffe": (("Hoofed Mammal",), (ANIMALS,)),
    "Kite": (("Toy",), (TOYS,)), "Frisbee": (("Toy",), (TOYS,)), "Skis": (("Sports Equipment",), (SPORTS,)),
    "Snowboard": (("Sports Equipment",), (SPORTS,)), "Baseball Bat": (("Sports Equipment",), (SPORTS,)),
    "Baseball Glove": (("Sports Equipment",), (SPORTS,)), "Skateboard": (("Sports Equipment",), (SPORTS,)),
    "Surfboard": (("Sports Equipment",), (SPORTS,)), "Fork": (("Tableware",), (KITCHEN,)),
    "Knife": (("Tableware",), (KITCHEN,)), "Spoon": (("Tableware",), (KITCHEN,)),
    "Carrot": (("Vegetable",), (FOOD,)), "Donut": (("Dessert",), (FOOD,)), "Cake": (("Dessert",), (FOOD,)),
    "Apple": (("Fruit",), (FOOD,)), "Scissors": (("Tool",), (TOOLS,)), "Toothbrush": ((), (HOME,)),
    "Book": ((), (OFFICE,)), "Suitcase": (("Bag",), (TRANSPORT,)), "Bag": ((), (APPAREL,)),
    "Handbag": (("Bag",), (APPAREL,)), "Tie": (("Clothing",), (APPAREL,)),
    "Hair Dryer": (("Home Appliance",), (HOME,)), "Dining Table": (("Furniture",), (FURNITURE,)),
    "Toilet": ((), (HOME,)), "Sink": ((), (HOME,)), "Potted Plant": (("Plant",), (PLANTS, HOME)),
    "Cup": (("Tableware",), (KITCHEN,)), "Bowl": (("Tableware",), (KITCHEN,)),
    "Wine Glass": (("Tableware",), (KITCHEN,)), "Remote Control": (("Electronics",), (TECH,)),
    "Mobile Phone": (("Electronics",), (TECH,)), "Television": (("Electronics",), (TECH,)),
    "Keyboard": (("Computer",), (TECH,)), "Mouse": (("Computer",), (TECH,)), "Laptop": (("Computer",), (TECH,)),
    "Oven": (("Home Appliance",), (KITCHEN,)), "Toaster": (("Home Appliance",), (KITCHEN,)),
    "Teddy Bear": (("Toy",), (TOYS,)), "Vase": ((), (HOME,)), "Umbrella": ((), (EVERYDAY,)),
    "Backpack": (("Bag",), (APPAREL,)),
}

# COCO id -> canonical label (the detector's names are already common names; these are the spellings kept)
COCO = {
    1: "Person", 2: "Bicycle", 3: "Car", 4: "Motorcycle", 5: "Airplane", 6: "Bus", 7: "Train", 8: "Truck",
    9: "Boat", 10: "Traffic Light", 11: "Fire Hydrant", 13: "Stop Sign", 14: "Parking Meter", 15: "Bench",
    16: "Bird", 17: "Cat", 18: "Dog", 19: "Horse", 20: "Sheep", 21: "Cattle", 22: "Elephant", 23: "Bear",
    24: "Zebra", 25: "Giraffe", 27: "Backpack", 28: "Umbrella", 31: "Handbag", 32: "Tie", 33: "Suitcase",
    34: "Frisbee", 35: "Skis", 36: "Snowboard", 37: "Ball", 38: "Kite", 39: "Baseball Bat",
    40: "Baseball Glove", 41: "Skateboard", 42: "Surfboard", 43: "Racket", 44: "Bottle", 46: "Wine Glass",
    47: "Cup", 48: "Fork", 49: "Knife", 50: "Spoon", 51: "Bowl", 52: "Banana", 53: "Apple", 54: "Sandwich",
    55: "Orange", 56: "Broccoli", 57: "Carrot", 58: "Hot Dog", 59: "Pizza", 60: "Donut", 61: "Cake",
    62: "Chair", 63: "Couch", 64: "Potted Plant", 65: "Bed", 67: "Dining Table", 70: "Toilet", 72: "Television",
    73: "Laptop", 74: "Mouse", 75: "Remote Control", 76: "Keyboard", 77: "Mobile Phone", 78: "Microwave",
    79: "Oven", 80: "Toaster", 81: "Sink", 82: "Refrigerator", 84: "Book", 85: "Clock", 86: "Vase",
    87: "Scissors", 88: "Teddy Bear", 89: "Hair Dryer", 90: "Toothbrush",
}

# ImageNet classes whose own name (BROAD members) or group is wrong or unreadable: WordNet id -> canonical label
CLASS_NAMES = {
    "n07697537": "Hot Dog", "n03642806": "Laptop", "n03793489": "Mouse", "n04404412": "Television",
    "n03782006": "Television", "n02992529": "Mobile Phone", "n04074963": "Remote Control",
    "n03085013": "Keyboard", "n04505470": "Keyboard", "n03761084": "Microwave", "n04442312": "Toaster",
    "n04070727": "Refrigerator", "n04553703": "Sink", "n04447861": "Toilet", "n03991062": "Potted Plant",
    "n03063599": "Cup", "n07930864": "Cup", "n03775546": "Bowl", "n04263257": "Bowl", "n04522168": "Vase",
    "n04507155": "Umbrella", "n02769748": "Backpack", "n04026417": "Handbag", "n04591157": "Tie",
"n04399382": "Teddy Bear", "n03483316": "Hair Dryer", "n03201208": "Dining Table",
    "n04597913": "Spoon", "n03658185": "Knife", "n03041632": "Knife", "n07753592": "Banana",
    "n07742313": "Apple", "n07747607": "Orange", "n07714990": "Broccoli", "n07873807": "Pizza",
    "n04039381": "Racket", "n04228054": "Skis", "n06596364": "Book", "n07248320": "Book",
    "n02869837": "Book", "n03888605": "Parallel Bars", "n02892767": "Bra", "n03866082": "Overskirt",
    "n03710637": "Swimsuit", "n03710721": "Swimsuit", "n04371430": "Swimsuit", "n03595614": "Jersey",
    "n04532106": "Vestment", "n02667093": "Abaya", "n03045698": "Cloak", "n02963159": "Cardigan",
    "n03594734": "Jean", "n03325584": "Feather Boa", "n04350905": "Suit", "n09229709": "Bubble",
    "n04254680": "Soccer Ball", "n04540053": "Volleyball", "n02802426": "Basketball",
    "n02799071": "Baseball", "n03445777": "Golf Ball", "n04118538": "Rugby Ball", "n04409515": "Tennis Ball",
    "n03942813": "Ping-pong Ball", "n03134739": "Croquet Ball", "n02930766": "Taxi",
    "n04285008": "Sports Car", "n03770679": "Minivan", "n03594945": "Jeep", "n03100240": "Convertible",
    "n07920052": "Coffee", "n07932039": "Eggnog", "n07892512": "Wine", "n02823428": "Beer Bottle",
    "n04560804": "Water Jug", "n02815834": "Beaker", "n03014705": "Chest", "n04004767": "Printer",
    "n03180011": "Computer", "n03832673": "Laptop", "n04238763": "Slide Rule", "n03126707": "Crane",
    "n03976657": "Pole", "n03954731": "Hand Plane", "n04552348": "Airplane", "n02747177": "Trash Can",
    "n03110669": "Trumpet", "n13133613": "Corn", "n02443484": "Ferret", "n02437312": "Camel",
    "n09835506": "Person", "n10148035": "Person", "n10565667": "Person",
}

# Noisy or unhelpful classes: never returned on their own (priority below zero)
SUPPRESSED = {"Nematode", "Window Screen", "Honeycomb", "Chain Mail", "Jigsaw Puzzle", "Web Site",
              "Comic Book", "Book Jacket", "Envelope", "Doormat", "Paper Towel", "Toilet Tissue"}

# Thresholds (percent), chosen on benchmarks/recognition.py's photos (docs/vocabulary.md). A group label
# sums its classes' probabilities, so it can be trusted lower than one specific class. The detector is
# sure of itself when wrong (a lion as a 70 % dog): a label it can name needs 65.
GROUP_THRESHOLD, OWN_THRESHOLD, DETECTOR_THRESHOLD = 40.0, 50.0, 65.0
THRESHOLDS = {"Person": 60.0}
