"""The fictional world's schema, as data: entity types, their attributes and relations.

Each entity type belongs to a domain and has *attributes* (values: counts, measures,
years, dates, invented words, codes) and *relations* (functional links to one entity of
another type). Every field carries a noun-phrase label and a few question templates; the
world builder (`world.py`) fills the schema with invented entities, and `decompose.py`
composes questions from these templates. ``{x}`` in a template is the subject: a name, or
a noun phrase for nested multi-hop questions.

Value kinds: ``count`` (integer, thousands separators in gold answers), ``measure``
(one decimal), ``year``, ``date`` (YYYY-MM-DD), ``word`` (an invented proper word),
``code`` (e.g. ``KR-4821``). Numeric ranges stay above 150 so that gold numbers never
collide with the small constants in tool documents (defaults, ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("count", "measure", "year", "date", "word", "code")
NUMERIC_KINDS = ("count", "measure", "year")


@dataclass(frozen=True)
class Attribute:
    """A value-valued field of an entity type."""

    name: str
    kind: str
    lo: float = 0
    hi: float = 0
    label: str = ""
    unit: str = ""
    templates: tuple[str, ...] = ()

    @property
    def is_relation(self) -> bool:
        return False


@dataclass(frozen=True)
class Relation:
    """A functional link from an entity to one entity of `target` type."""

    name: str
    target: str
    label: str = ""
    phrases: tuple[str, ...] = ()  # noun phrases naming the target, e.g. "the city where {x} was born"
    templates: tuple[str, ...] = ()

    kind = "name"
    unit = ""

    @property
    def is_relation(self) -> bool:
        return True


@dataclass(frozen=True)
class EntityType:
    name: str
    domain: str
    noun: str
    plural: str
    names: tuple[str, ...]  # name patterns; {C} is a unique invented core word, {F} a first name
    attributes: tuple[Attribute, ...]
    relations: tuple[Relation, ...]
    wh: str = "What"  # question word for an entity of this type ("Who" for people)
    key: str = ""  # the lookup parameter name, e.g. "city_name"
    fields_by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", f"{self.name}_name")
        self.fields_by_name.update({f.name: f for f in (*self.attributes, *self.relations)})

    @property
    def fields(self) -> tuple:
        return (*self.attributes, *self.relations)

    def get_field(self, name: str):
        try:
            return self.fields_by_name[name]
        except KeyError:
            raise KeyError(
                f"entity type '{self.name}' has no field '{name}' (has {sorted(self.fields_by_name)})"
            ) from None


def A(
    name: str, kind: str, lo: float = 0, hi: float = 0, label: str = "", unit: str = "", q: tuple[str, ...] = ()
) -> Attribute:
    if kind not in KINDS:
        raise ValueError(f"attribute '{name}': unknown kind '{kind}' (use one of {KINDS})")
    return Attribute(name, kind, lo, hi, label or name.replace("_", " "), unit or kind, tuple(q))


def R(name: str, target: str, label: str = "", np: tuple[str, ...] = (), q: tuple[str, ...] = ()) -> Relation:
    return Relation(name, target, label or name.replace("_", " "), tuple(np), tuple(q))


def T(
    name: str,
    domain: str,
    noun: str,
    plural: str,
    names: tuple[str, ...],
    attrs: list,
    rels: list,
    wh: str = "What",
    key: str = "",
) -> EntityType:
    return EntityType(name, domain, noun, plural, tuple(names), tuple(attrs), tuple(rels), wh, key)


_YEAR_OLD, _YEAR_NEW = 1420, 1990

TYPES: tuple[EntityType, ...] = (
    # --- geography -------------------------------------------------------------------
    T(
        "country",
        "geography",
        "country",
        "countries",
        ("{C}", "{C}ia", "Republic of {C}"),
        [
            A("population", "count", 300_000, 90_000_000, unit="people", q=("How many people live in {x}?",)),
            A(
                "area",
                "count",
                2_000,
                900_000,
                "area in square kilometres",
                "km2",
                q=("How large is {x} in square kilometres?",),
            ),
            A(
                "independence_year",
                "year",
                1700,
                1985,
                "year of independence",
                q=("In which year did {x} become independent?",),
            ),
            A("currency", "word", label="currency", q=("What currency is used in {x}?",)),
            A("dialing_code", "code", label="international dialing code"),
        ],
        [
            R("capital", "city", np=("the capital of {x}",), q=("What is the capital of {x}?",)),
            R("head_of_state", "person", "head of state", q=("Who is the head of state of {x}?",)),
            R("official_language", "language", "official language", q=("What is the official language of {x}?",)),
        ],
    ),
    T(
        "city",
        "geography",
        "city",
        "cities",
        ("{C}", "{C}ford", "Port {C}", "{C}ton", "New {C}"),
        [
            A(
                "population",
                "count",
                20_000,
                9_000_000,
                unit="people",
                q=("How many people live in {x}?", "How many inhabitants does {x} have?"),
            ),
            A(
                "founding_year",
                "year",
                900,
                1900,
                "founding year",
                q=("In which year was {x} founded?", "When was {x} founded?"),
            ),
            A(
                "elevation",
                "count",
                160,
                2_900,
                "elevation in metres",
                "m",
                q=("How high above sea level is {x}, in metres?",),
            ),
            A("nickname", "word", label="nickname", q=("What is the nickname of {x}?",)),
            A("postal_prefix", "code", label="postal code prefix"),
        ],
        [
            R(
                "country",
                "country",
                np=("the country where {x} is located", "the country that {x} belongs to"),
                q=("Which country is {x} located in?", "In which country is {x}?"),
            ),
            R("mayor", "person", q=("Who is the mayor of {x}?",)),
            R("twin_city", "city", "twin city", q=("Which city is the twin city of {x}?",)),
        ],
    ),
    T(
        "river",
        "geography",
        "river",
        "rivers",
        ("{C} River", "River {C}"),
        [
            A("length", "count", 160, 6_800, "length in kilometres", "km", q=("How long is {x} in kilometres?",)),
            A("discharge", "count", 200, 90_000, "average discharge in cubic metres per second", "m3/s"),
            A(
                "first_charted",
                "year",
                1500,
                1900,
                "year of first charting",
                q=("In which year was {x} first charted?",),
            ),
        ],
        [
            R(
                "source_country",
                "country",
                "source country",
                np=("the country where {x} rises",),
                q=("In which country does {x} rise?",),
            ),
            R(
                "mouth_city",
                "city",
                "mouth city",
                np=("the city at the mouth of {x}",),
                q=("Which city lies at the mouth of {x}?",),
            ),
        ],
    ),
    T(
        "mountain",
        "geography",
        "mountain",
        "mountains",
        ("Mount {C}", "{C} Peak", "{C}horn"),
        [
            A(
                "height",
                "count",
                900,
                8_700,
                "height in metres",
                "m",
                q=("How high is {x} in metres?", "What is the height of {x} in metres?"),
            ),
            A("first_ascent", "date", 1780, 1985, "date of the first ascent", q=("When was {x} first climbed?",)),
            A("prominence", "count", 300, 4_800, "prominence in metres", "m"),
        ],
        [
            R("country", "country", np=("the country where {x} stands",), q=("In which country is {x}?",)),
            R(
                "first_climber",
                "person",
                "first climber",
                np=("the first person to climb {x}",),
                q=("Who first climbed {x}?",),
            ),
        ],
    ),
    T(
        "lake",
        "geography",
        "lake",
        "lakes",
        ("Lake {C}", "{C} Lake"),
        [
            A("surface_area", "count", 160, 60_000, "surface area in square kilometres", "km2"),
            A(
                "max_depth",
                "count",
                160,
                1_600,
                "maximum depth in metres",
                "m",
                q=("How deep is {x} at its deepest point, in metres?",),
            ),
            A("fish_species_count", "count", 160, 900, "number of fish species", "species"),
        ],
        [
            R("country", "country", np=("the country where {x} lies",), q=("In which country does {x} lie?",)),
            R("nearest_city", "city", "nearest city", q=("Which city is nearest to {x}?",)),
        ],
    ),
    T(
        "port",
        "geography",
        "port",
        "ports",
        ("Port of {C}", "{C} Harbour"),
        [
            A(
                "annual_cargo",
                "count",
                200_000,
                90_000_000,
                "annual cargo in tonnes",
                "t",
                q=("How many tonnes of cargo does {x} handle per year?",),
            ),
            A("berths", "count", 160, 900, "number of berths", "berths"),
            A("opened", "year", 1600, 1980, "opening year", q=("In which year did {x} open?",)),
            A("port_code", "code", label="port code", q=("What is the port code of {x}?",)),
        ],
        [
            R("city", "city", np=("the city served by {x}",), q=("Which city is {x} in?",)),
            R("harbour_master", "person", "harbour master", q=("Who is the harbour master of {x}?",)),
        ],
    ),
    # --- people ------------------------------------------------------------------------
    T(
        "person",
        "people",
        "person",
        "people",
        ("{F} {C}",),
        [
            A(
                "birth_date",
                "date",
                1890,
                1995,
                "date of birth",
                q=("When was {x} born?", "What is the date of birth of {x}?"),
            ),
            A("followers", "count", 1_200, 9_000_000, "number of social media followers", "followers"),
            A("nickname", "word", label="nickname", q=("What nickname is {x} known by?",)),
            A("passport_number", "code", label="passport number"),
        ],
        [
            R(
                "birthplace",
                "city",
                np=("the city where {x} was born", "the birthplace of {x}"),
                q=("Where was {x} born?", "In which city was {x} born?"),
            ),
            R(
                "employer",
                "company",
                np=("the company that employs {x}", "the employer of {x}"),
                q=("Which company does {x} work for?",),
            ),
            R(
                "alma_mater",
                "university",
                "alma mater",
                np=("the university where {x} studied",),
                q=("Where did {x} study?", "Which university did {x} graduate from?"),
            ),
            R("mentor", "person", np=("the mentor of {x}",), q=("Who mentored {x}?",)),
        ],
        wh="Who",
    ),
    # --- organisations -------------------------------------------------------------------
    T(
        "company",
        "organisations",
        "company",
        "companies",
        ("{C} Labs", "{C} Dynamics", "{C} Holdings", "{C} Industries", "{C} Group"),
        [
            A("founding_year", "year", 1850, 2015, "founding year", q=("In which year was {x} founded?",)),
            A(
                "employees",
                "count",
                160,
                400_000,
                "number of employees",
                "employees",
                q=("How many people does {x} employ?",),
            ),
            A(
                "revenue",
                "count",
                2_000_000,
                90_000_000_000,
                "annual revenue in US dollars",
                "USD",
                q=("What is the annual revenue of {x} in US dollars?",),
            ),
            A("ticker", "code", label="stock ticker", q=("What is the stock ticker of {x}?",)),
        ],
        [
            R("founder", "person", np=("the founder of {x}", "the person who founded {x}"), q=("Who founded {x}?",)),
            R("headquarters", "city", np=("the city where {x} is headquartered",), q=("Where is {x} headquartered?",)),
            R(
                "ceo",
                "person",
                "chief executive",
                np=("the chief executive of {x}",),
                q=("Who is the chief executive of {x}?",),
            ),
        ],
    ),
    T(
        "charity",
        "organisations",
        "charity",
        "charities",
        ("{C} Foundation", "{C} Trust", "Friends of {C}"),
        [
            A("donors", "count", 300, 900_000, "number of donors", "donors"),
            A("established", "year", 1850, 2015, "year of establishment", q=("When was {x} established?",)),
            A("registration_number", "code", label="registration number"),
        ],
        [
            R("founder", "person", np=("the founder of {x}",), q=("Who founded {x}?",)),
            R("base_city", "city", "home city", np=("the city where {x} is based",), q=("Where is {x} based?",)),
        ],
    ),
    # --- products ----------------------------------------------------------------------
    T(
        "product",
        "products",
        "product",
        "products",
        ("{C} Pro", "{C} Air", "{C} Max", "{C}pad"),
        [
            A("release_date", "date", 1995, 2023, "release date", q=("When was {x} released?",)),
            A(
                "price",
                "count",
                160,
                9_000,
                "launch price in US dollars",
                "USD",
                q=("How much did {x} cost at launch, in US dollars?",),
            ),
            A("units_sold", "count", 5_000, 90_000_000, "number of units sold", "units"),
            A("model_number", "code", label="model number", q=("What is the model number of {x}?",)),
        ],
        [
            R(
                "manufacturer",
                "company",
                np=("the company that manufactures {x}", "the manufacturer of {x}"),
                q=("Which company makes {x}?",),
            ),
            R(
                "designer",
                "person",
                np=("the designer of {x}", "the person who designed {x}"),
                q=("Who designed {x}?",),
            ),
        ],
    ),
    # --- events ------------------------------------------------------------------------
    T(
        "festival",
        "events",
        "festival",
        "festivals",
        ("{C} Festival", "{C} Fair", "Feast of {C}"),
        [
            A("first_held", "year", 1700, 2015, "year of the first edition", q=("When was {x} first held?",)),
            A(
                "attendance",
                "count",
                1_500,
                2_000_000,
                "annual attendance",
                "visitors",
                q=("How many people attend {x} each year?",),
            ),
            A("mascot", "word", label="mascot", q=("What is the mascot of {x}?",)),
        ],
        [
            R("host_city", "city", "host city", np=("the city that hosts {x}",), q=("Which city hosts {x}?",)),
            R("founder", "person", np=("the founder of {x}",), q=("Who founded {x}?",)),
            R("sponsor", "company", "main sponsor", q=("Which company is the main sponsor of {x}?",)),
        ],
    ),
    T(
        "conference",
        "events",
        "conference",
        "conferences",
        ("{C} Summit", "{C} Congress", "{C}Con"),
        [
            A("first_edition", "date", 1950, 2020, "date of the first edition", q=("When did {x} first take place?",)),
            A("delegates", "count", 200, 60_000, "number of delegates", "delegates"),
            A("registration_code", "code", label="registration code"),
        ],
        [
            R(
                "venue",
                "building",
                np=("the venue of {x}", "the building where {x} is held"),
                q=("Where is {x} held?",),
            ),
            R("chair", "person", np=("the chair of {x}",), q=("Who chairs {x}?",)),
            R("organiser", "university", "organising university", q=("Which university organises {x}?",)),
        ],
    ),
    # --- works of art ------------------------------------------------------------------
    T(
        "painting",
        "art",
        "painting",
        "paintings",
        ("The {C} Portrait", "View of {C}", "{C} at Dusk"),
        [
            A("year_painted", "year", _YEAR_OLD, _YEAR_NEW, "year of painting", q=("In which year was {x} painted?",)),
            A(
                "value",
                "count",
                90_000,
                300_000_000,
                "estimated value in US dollars",
                "USD",
                q=("What is the estimated value of {x} in US dollars?",),
            ),
            A("catalogue_number", "code", label="catalogue number"),
        ],
        [
            R("artist", "person", np=("the painter of {x}", "the artist who painted {x}"), q=("Who painted {x}?",)),
            R("museum", "museum", np=("the museum that holds {x}",), q=("Which museum holds {x}?",)),
        ],
    ),
    T(
        "novel",
        "art",
        "novel",
        "novels",
        ("The {C} Chronicle", "{C}", "Letters from {C}"),
        [
            A("publication_year", "year", 1700, 2020, "publication year", q=("When was {x} first published?",)),
            A("pages", "count", 160, 1_400, "number of pages", "pages", q=("How many pages does {x} have?",)),
            A("copies_sold", "count", 2_000, 50_000_000, "number of copies sold", "copies"),
            A("isbn_prefix", "code", label="ISBN prefix"),
        ],
        [
            R("author", "person", np=("the author of {x}", "the writer of {x}"), q=("Who wrote {x}?",)),
            R("publisher", "company", np=("the publisher of {x}",), q=("Which company published {x}?",)),
            R("setting", "city", np=("the city where {x} is set",), q=("In which city is {x} set?",)),
        ],
    ),
    T(
        "film",
        "art",
        "film",
        "films",
        ("The Last {C}", "{C} Rising", "Return to {C}"),
        [
            A("release_date", "date", 1930, 2023, "release date", q=("When was {x} released?",)),
            A("box_office", "count", 200_000, 2_000_000_000, "box office gross in US dollars", "USD"),
            A("runtime", "count", 160, 240, "running time in minutes", "minutes"),
        ],
        [
            R(
                "director",
                "person",
                np=("the director of {x}", "the person who directed {x}"),
                q=("Who directed {x}?",),
            ),
            R("lead_actor", "person", "lead actor", q=("Who played the lead role in {x}?",)),
            R("studio", "company", np=("the studio that produced {x}",), q=("Which studio produced {x}?",)),
        ],
    ),
    T(
        "album",
        "art",
        "album",
        "albums",
        ("{C} Nights", "Songs of {C}", "{C}"),
        [
            A("release_year", "year", 1955, 2023, "release year", q=("In which year was {x} released?",)),
            A("streams", "count", 10_000, 900_000_000, "number of streams", "streams"),
            A("catalogue_code", "code", label="catalogue code"),
        ],
        [
            R("artist", "person", np=("the artist who recorded {x}",), q=("Who recorded {x}?",)),
            R(
                "label",
                "company",
                "record label",
                np=("the record label of {x}",),
                q=("Which record label released {x}?",),
            ),
            R(
                "studio_city",
                "city",
                "recording city",
                np=("the city where {x} was recorded",),
                q=("Where was {x} recorded?",),
            ),
        ],
    ),
    # --- species -------------------------------------------------------------------------
    T(
        "animal",
        "species",
        "animal species",
        "animal species",
        ("{C} {c}is", "{C} {c}us", "Greater {C}"),
        [
            A("lifespan", "count", 160, 900, "maximum recorded lifespan in months", "months"),
            A(
                "population_estimate",
                "count",
                300,
                5_000_000,
                "estimated wild population",
                "individuals",
                q=("How many {x} are estimated to live in the wild?",),
            ),
            A(
                "described",
                "year",
                1750,
                2010,
                "year of first description",
                q=("In which year was {x} first described?",),
            ),
        ],
        [
            R(
                "discoverer",
                "person",
                np=("the person who discovered {x}", "the discoverer of {x}"),
                q=("Who discovered {x}?",),
            ),
            R(
                "habitat_lake",
                "lake",
                "home lake",
                np=("the lake where {x} lives",),
                q=("In which lake does {x} live?",),
            ),
            R("native_country", "country", "native country", q=("Which country is {x} native to?",)),
        ],
    ),
    T(
        "plant",
        "species",
        "plant species",
        "plant species",
        ("{C} {c}ia", "{C} {c}a", "{C}wort"),
        [
            A("max_height", "count", 160, 9_000, "maximum height in centimetres", "cm"),
            A("described", "year", 1750, 2010, "year of first description", q=("When was {x} first described?",)),
            A("seed_count", "count", 160, 90_000, "seeds per plant", "seeds"),
        ],
        [
            R("discoverer", "person", np=("the botanist who discovered {x}",), q=("Who discovered {x}?",)),
            R(
                "native_country",
                "country",
                "native country",
                np=("the country where {x} grows wild",),
                q=("Where does {x} grow wild?",),
            ),
        ],
    ),
    # --- vehicles ------------------------------------------------------------------------
    T(
        "car_model",
        "vehicles",
        "car model",
        "car models",
        ("{C} GT", "{C} Coupe", "{C} Tourer"),
        [
            A("launch_year", "year", 1920, 2023, "launch year", q=("In which year was the {x} launched?",)),
            A(
                "top_speed",
                "count",
                160,
                420,
                "top speed in km/h",
                "km/h",
                q=("What is the top speed of the {x} in km/h?",),
            ),
            A("units_built", "count", 500, 9_000_000, "number of units built", "units"),
            A("chassis_code", "code", label="chassis code"),
        ],
        [
            R(
                "manufacturer",
                "company",
                np=("the maker of the {x}", "the company that builds the {x}"),
                q=("Which company makes the {x}?",),
            ),
            R("designer", "person", np=("the designer of the {x}",), q=("Who designed the {x}?",)),
            R(
                "assembly_city",
                "city",
                "assembly city",
                np=("the city where the {x} is assembled",),
                q=("Where is the {x} assembled?",),
            ),
        ],
    ),
    T(
        "aircraft",
        "vehicles",
        "aircraft type",
        "aircraft types",
        ("{C} Jet", "{C} Skylark", "{C} Liner"),
        [
            A("first_flight", "date", 1930, 2020, "first-flight date", q=("When did the {x} first fly?",)),
            A(
                "range",
                "count",
                400,
                16_000,
                "range in kilometres",
                "km",
                q=("What is the range of the {x} in kilometres?",),
            ),
            A("seats", "count", 160, 850, "number of seats", "seats", q=("How many seats does the {x} have?",)),
        ],
        [
            R("manufacturer", "company", np=("the manufacturer of the {x}",), q=("Who manufactures the {x}?",)),
            R("chief_engineer", "person", "chief engineer", q=("Who was the chief engineer of the {x}?",)),
            R(
                "launch_customer",
                "company",
                "launch customer",
                q=("Which company was the launch customer of the {x}?",),
            ),
        ],
    ),
    # --- ships -----------------------------------------------------------------------------
    T(
        "ship",
        "ships",
        "ship",
        "ships",
        ("MV {C}", "SS {C}", "RV {C}"),
        [
            A("launched", "date", 1860, 2022, "launch date", q=("When was {x} launched?",)),
            A("tonnage", "count", 900, 220_000, "gross tonnage", "GT", q=("What is the gross tonnage of {x}?",)),
            A("length", "measure", 160, 460, "length in metres", "m", q=("How long is {x} in metres?",)),
            A("imo_number", "code", label="IMO number", q=("What is the IMO number of {x}?",)),
        ],
        [
            R("home_port", "port", "home port", np=("the home port of {x}",), q=("What is the home port of {x}?",)),
            R("captain", "person", np=("the captain of {x}",), q=("Who captains {x}?",)),
            R("builder", "company", "shipbuilder", np=("the company that built {x}",), q=("Which company built {x}?",)),
        ],
    ),
    # --- software --------------------------------------------------------------------------
    T(
        "software",
        "software",
        "software package",
        "software packages",
        ("{C}DB", "{C}Kit", "{C}OS", "{C}.js"),
        [
            A("first_release", "date", 1985, 2023, "first release date", q=("When was {x} first released?",)),
            A(
                "github_stars",
                "count",
                200,
                400_000,
                "number of GitHub stars",
                "stars",
                q=("How many GitHub stars does {x} have?",),
            ),
            A("contributors", "count", 160, 9_000, "number of contributors", "contributors"),
            A("licence_code", "code", label="licence identifier"),
        ],
        [
            R(
                "developer",
                "company",
                np=("the company that develops {x}", "the developer of {x}"),
                q=("Which company develops {x}?",),
            ),
            R("lead_maintainer", "person", "lead maintainer", q=("Who is the lead maintainer of {x}?",)),
            R(
                "written_in",
                "programming_language",
                "implementation language",
                np=("the language {x} is written in",),
                q=("Which programming language is {x} written in?",),
            ),
        ],
    ),
    T(
        "programming_language",
        "software",
        "programming language",
        "programming languages",
        ("{C}", "{C}Script", "{C}++"),
        [
            A("first_appeared", "year", 1955, 2020, "year of first appearance", q=("When did {x} first appear?",)),
            A("keywords", "count", 160, 400, "number of reserved keywords", "keywords"),
            A("file_extension", "word", label="file extension", q=("What file extension does {x} use?",)),
        ],
        [
            R(
                "designer",
                "person",
                np=("the designer of {x}", "the person who designed {x}"),
                q=("Who designed {x}?",),
            ),
            R("steward", "company", "stewarding organisation", q=("Which company stewards {x}?",)),
        ],
    ),
    # --- sports ----------------------------------------------------------------------------
    T(
        "sports_team",
        "sports",
        "sports team",
        "sports teams",
        ("{C} United", "{C} Rovers", "{C} Falcons", "Real {C}"),
        [
            A("founded", "year", 1860, 2010, "founding year", q=("When was {x} founded?",)),
            A("titles", "count", 160, 400, "number of titles won", "titles"),
            A("fan_club_members", "count", 1_000, 900_000, "number of fan club members", "members"),
            A("team_code", "code", label="team code"),
        ],
        [
            R(
                "home_stadium",
                "stadium",
                "home stadium",
                np=("the home stadium of {x}", "the stadium where {x} plays"),
                q=("Where does {x} play its home games?",),
            ),
            R("coach", "person", "head coach", np=("the head coach of {x}",), q=("Who coaches {x}?",)),
            R("city", "city", "home city", np=("the home city of {x}",), q=("Which city is {x} from?",)),
        ],
    ),
    T(
        "stadium",
        "sports",
        "stadium",
        "stadiums",
        ("{C} Arena", "{C} Park", "{C} Stadium"),
        [
            A(
                "capacity",
                "count",
                2_000,
                120_000,
                "seating capacity",
                "seats",
                q=("How many spectators can {x} hold?",),
            ),
            A("opened", "year", 1880, 2022, "opening year", q=("In which year did {x} open?",)),
            A("pitch_length", "measure", 160, 240, "pitch length in metres", "m"),
        ],
        [
            R("city", "city", np=("the city where {x} stands",), q=("In which city is {x}?",)),
            R("architect", "person", np=("the architect of {x}",), q=("Who designed {x}?",)),
            R("owner", "company", np=("the owner of {x}", "the company that owns {x}"), q=("Which company owns {x}?",)),
        ],
    ),
    # --- medicine -------------------------------------------------------------------------
    T(
        "disease",
        "medicine",
        "disease",
        "diseases",
        ("{C} fever", "{C} syndrome", "{C}'s disease"),
        [
            A("identified", "year", 1800, 2015, "year of first identification", q=("When was {x} first identified?",)),
            A(
                "annual_cases",
                "count",
                300,
                9_000_000,
                "number of cases per year",
                "cases",
                q=("How many cases of {x} are reported each year?",),
            ),
            A("incubation_hours", "count", 160, 900, "incubation period in hours", "hours"),
            A("icd_code", "code", label="classification code", q=("What is the classification code of {x}?",)),
        ],
        [
            R("discoverer", "person", np=("the physician who first described {x}",), q=("Who first described {x}?",)),
            R(
                "first_outbreak_city",
                "city",
                "city of the first outbreak",
                np=("the city of the first outbreak of {x}",),
                q=("In which city was the first outbreak of {x}?",),
            ),
        ],
    ),
    T(
        "medicine",
        "medicine",
        "medicine",
        "medicines",
        ("{C}ex", "{C}zol", "{C}mab", "{C}ine"),
        [
            A("approved", "date", 1950, 2023, "approval date", q=("When was {x} approved?",)),
            A(
                "dose",
                "count",
                160,
                900,
                "standard dose in milligrams",
                "mg",
                q=("What is the standard dose of {x} in milligrams?",),
            ),
            A("annual_sales", "count", 200_000, 20_000_000_000, "annual sales in US dollars", "USD"),
        ],
        [
            R(
                "treats",
                "disease",
                "target disease",
                np=("the disease treated by {x}",),
                q=("Which disease does {x} treat?",),
            ),
            R(
                "manufacturer",
                "company",
                np=("the maker of {x}", "the company that produces {x}"),
                q=("Which company produces {x}?",),
            ),
            R("inventor", "person", np=("the inventor of {x}",), q=("Who invented {x}?",)),
        ],
    ),
    # --- food ------------------------------------------------------------------------------
    T(
        "dish",
        "food",
        "dish",
        "dishes",
        ("{C} stew", "{C} pie", "{C} dumplings", "{C} curry"),
        [
            A(
                "calories",
                "count",
                160,
                1_900,
                "calories per serving",
                "kcal",
                q=("How many calories does a serving of {x} have?",),
            ),
            A("first_recorded", "year", 1400, 1990, "year of first record", q=("When was {x} first recorded?",)),
            A("secret_spice", "word", label="signature spice", q=("What is the signature spice of {x}?",)),
        ],
        [
            R(
                "origin_city",
                "city",
                "city of origin",
                np=("the city where {x} originated",),
                q=("Where does {x} come from?",),
            ),
            R("creator", "person", np=("the creator of {x}", "the chef who created {x}"), q=("Who created {x}?",)),
        ],
    ),
    T(
        "beverage",
        "food",
        "beverage",
        "beverages",
        ("{C} tea", "{C} cola", "{C} ale", "{C} brandy"),
        [
            A("launched", "year", 1700, 2020, "launch year", q=("When was {x} launched?",)),
            A("annual_litres", "count", 10_000, 900_000_000, "litres produced per year", "l"),
            A("barcode_prefix", "code", label="barcode prefix"),
        ],
        [
            R(
                "producer",
                "company",
                np=("the producer of {x}", "the company that makes {x}"),
                q=("Who produces {x}?",),
            ),
            R("origin_country", "country", "country of origin", q=("Where does {x} come from?",)),
        ],
    ),
    # --- languages -------------------------------------------------------------------------
    T(
        "language",
        "languages",
        "language",
        "languages",
        ("{C}ian", "{C}ese", "{C}ic"),
        [
            A(
                "speakers",
                "count",
                5_000,
                90_000_000,
                "number of native speakers",
                "speakers",
                q=("How many native speakers does {x} have?",),
            ),
            A(
                "first_written",
                "year",
                600,
                1900,
                "year of the earliest written record",
                q=("When was {x} first written down?",),
            ),
            A("script", "word", label="writing system", q=("What writing system does {x} use?",)),
            A("iso_code", "code", label="ISO code", q=("What is the ISO code of {x}?",)),
        ],
        [
            R(
                "main_country",
                "country",
                "main country",
                np=("the country where {x} is mostly spoken",),
                q=("Where is {x} mostly spoken?",),
            ),
            R(
                "standardiser",
                "person",
                "standardiser",
                np=("the person who standardised {x}",),
                q=("Who standardised {x}?",),
            ),
        ],
    ),
    # --- institutions ----------------------------------------------------------------------
    T(
        "university",
        "institutions",
        "university",
        "universities",
        ("University of {C}", "{C} Institute", "{C} College"),
        [
            A("founded", "year", 1100, 2000, "founding year", q=("When was {x} founded?",)),
            A("students", "count", 900, 90_000, "number of students", "students", q=("How many students attend {x}?",)),
            A("endowment", "count", 2_000_000, 50_000_000_000, "endowment in US dollars", "USD"),
            A("motto_word", "word", label="motto"),
        ],
        [
            R("city", "city", np=("the city where {x} is located",), q=("In which city is {x}?",)),
            R("president", "person", np=("the president of {x}",), q=("Who is the president of {x}?",)),
            R("founder", "person", np=("the founder of {x}",), q=("Who founded {x}?",)),
        ],
    ),
    T(
        "museum",
        "institutions",
        "museum",
        "museums",
        ("{C} Museum", "Museum of {C}", "{C} Gallery"),
        [
            A("opened", "year", 1700, 2020, "opening year", q=("When did {x} open?",)),
            A(
                "annual_visitors",
                "count",
                2_000,
                9_000_000,
                "annual visitors",
                "visitors",
                q=("How many visitors does {x} receive per year?",),
            ),
            A("collection_size", "count", 300, 8_000_000, "number of objects in the collection", "objects"),
        ],
        [
            R("city", "city", np=("the city that is home to {x}",), q=("Where is {x}?",)),
            R("director", "person", np=("the director of {x}",), q=("Who directs {x}?",)),
            R(
                "building",
                "building",
                "home building",
                np=("the building that houses {x}",),
                q=("Which building houses {x}?",),
            ),
        ],
    ),
    T(
        "hospital",
        "institutions",
        "hospital",
        "hospitals",
        ("{C} General Hospital", "St {C} Hospital", "{C} Clinic"),
        [
            A("beds", "count", 160, 3_000, "number of beds", "beds", q=("How many beds does {x} have?",)),
            A("opened", "year", 1750, 2020, "opening year", q=("When did {x} open?",)),
            A("staff", "count", 300, 40_000, "number of staff", "staff"),
        ],
        [
            R("city", "city", np=("the city served by {x}",), q=("Which city is {x} in?",)),
            R("chief_physician", "person", "chief physician", q=("Who is the chief physician of {x}?",)),
            R(
                "specialty_disease",
                "disease",
                "main specialty",
                np=("the disease {x} specialises in",),
                q=("Which disease does {x} specialise in?",),
            ),
        ],
    ),
    T(
        "library",
        "institutions",
        "library",
        "libraries",
        ("{C} Library", "Library of {C}", "{C} Archive"),
        [
            A(
                "volumes",
                "count",
                10_000,
                40_000_000,
                "number of volumes",
                "volumes",
                q=("How many volumes does {x} hold?",),
            ),
            A("founded", "year", 1300, 2010, "founding year", q=("When was {x} founded?",)),
            A("call_prefix", "code", label="call number prefix"),
        ],
        [
            R("city", "city", np=("the city where {x} is",), q=("Where is {x}?",)),
            R("librarian", "person", "head librarian", q=("Who is the head librarian of {x}?",)),
            R("founder", "person", np=("the founder of {x}",), q=("Who founded {x}?",)),
        ],
    ),
    # --- astronomy -------------------------------------------------------------------------
    T(
        "star",
        "astronomy",
        "star",
        "stars",
        ("{C}", "{C} Major", "{C} Prime"),
        [
            A(
                "distance",
                "measure",
                160,
                9_000,
                "distance in light years",
                "ly",
                q=("How far away is {x} in light years?",),
            ),
            A("discovered", "year", 1600, 2020, "year of discovery", q=("When was {x} discovered?",)),
            A("surface_temperature", "count", 2_200, 40_000, "surface temperature in kelvin", "K"),
            A("catalogue_id", "code", label="catalogue identifier"),
        ],
        [
            R("discoverer", "person", np=("the astronomer who discovered {x}",), q=("Who discovered {x}?",)),
            R(
                "observatory",
                "university",
                "discovering institution",
                np=("the institution that discovered {x}",),
                q=("Which institution discovered {x}?",),
            ),
        ],
    ),
    # --- architecture ----------------------------------------------------------------------
    T(
        "bridge",
        "architecture",
        "bridge",
        "bridges",
        ("{C} Bridge", "{C} Viaduct"),
        [
            A("length", "count", 160, 9_000, "length in metres", "m", q=("How long is {x} in metres?",)),
            A("opened", "date", 1850, 2022, "opening date", q=("When did {x} open?",)),
            A("daily_traffic", "count", 900, 300_000, "vehicles per day", "vehicles"),
        ],
        [
            R("city", "city", np=("the city where {x} stands",), q=("In which city is {x}?",)),
            R(
                "engineer",
                "person",
                np=("the engineer of {x}", "the engineer who designed {x}"),
                q=("Who engineered {x}?",),
            ),
            R("river", "river", np=("the river crossed by {x}",), q=("Which river does {x} cross?",)),
        ],
    ),
    T(
        "building",
        "architecture",
        "building",
        "buildings",
        ("{C} Tower", "{C} Hall", "{C} House"),
        [
            A("height", "count", 160, 900, "height in metres", "m", q=("How tall is {x} in metres?",)),
            A("completed", "year", 1500, 2022, "year of completion", q=("When was {x} completed?",)),
            A("floors", "count", 160, 300, "number of floors", "floors"),
            A("heritage_id", "code", label="heritage register number"),
        ],
        [
            R(
                "architect",
                "person",
                np=("the architect of {x}", "the architect who designed {x}"),
                q=("Who designed {x}?",),
            ),
            R("city", "city", np=("the city where {x} stands",), q=("In which city is {x}?",)),
            R("owner", "company", np=("the owner of {x}",), q=("Which company owns {x}?",)),
        ],
    ),
)

TYPES_BY_NAME: dict[str, EntityType] = {t.name: t for t in TYPES}
DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(t.domain for t in TYPES))


def entity_type(name: str) -> EntityType:
    try:
        return TYPES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown entity type '{name}' (known: {sorted(TYPES_BY_NAME)})") from None


def check_schema() -> None:
    """Raise ValueError if a relation targets an unknown type or a name is reused."""
    for t in TYPES:
        names = [f.name for f in t.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"entity type '{t.name}' defines a field twice: {names}")
        for r in t.relations:
            if r.target not in TYPES_BY_NAME:
                raise ValueError(f"{t.name}.{r.name} targets unknown type '{r.target}'")
        if not t.relations:
            raise ValueError(f"entity type '{t.name}' has no relation (chains would stop there)")


check_schema()
