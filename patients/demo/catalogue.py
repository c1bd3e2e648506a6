"""The demo catalogue of care items: interventions and guidance topics an OB/GYN clinic offers.

Each item has a profile over four kinds of effort — taking a medicine, monitoring herself,
changing a habit, learning — which the demo generator's latent patient types respond to, and
the clinical needs that make a clinician offer it.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("medicine", "monitoring", "habit", "learning")


@dataclass(frozen=True)
class CatalogueItem:
    slug: str
    name: str
    category: str  # "intervention" or "guidance_topic"
    description: str
    profile: tuple[float, float, float, float]  # weight on DIMENSIONS
    needs: frozenset[str] = frozenset()  # clinical needs that make it relevant ("any" = everyone)
    pregnancy_only: bool = True


CARE_ITEMS: tuple[CatalogueItem, ...] = (
    CatalogueItem(
        "iron-folic-acid",
        "Iron and folic acid supplementation",
        "intervention",
        "Daily oral iron (30–60 mg elemental) and folic acid (400 µg) through pregnancy (WHO ANC).",
        (1.0, 0.0, 0.2, 0.1),
        frozenset({"any", "anaemia"}),
    ),
    CatalogueItem(
        "home-bp-monitoring",
        "Home blood pressure monitoring",
        "intervention",
        "Validated cuff at home, readings twice daily, thresholds for calling the clinic.",
        (0.0, 1.0, 0.1, 0.3),
        frozenset({"hypertension", "pre_eclampsia_risk"}),
    ),
    CatalogueItem(
        "low-dose-aspirin",
        "Low-dose aspirin from 12 weeks",
        "intervention",
        "75–150 mg nightly from 12 weeks for women at high risk of pre-eclampsia.",
        (1.0, 0.0, 0.0, 0.2),
        frozenset({"pre_eclampsia_risk", "hypertension"}),
    ),
    CatalogueItem(
        "calcium-supplementation",
        "Calcium supplementation",
        "intervention",
        "1.5–2.0 g elemental calcium daily where dietary intake is low, to reduce pre-eclampsia risk.",
        (0.9, 0.0, 0.2, 0.1),
        frozenset({"pre_eclampsia_risk"}),
    ),
    CatalogueItem(
        "low-glycaemic-diet",
        "Low-glycaemic diet plan",
        "intervention",
        "Meal plan with a dietitian: complex carbohydrates, regular meals, fewer sugary drinks.",
        (0.0, 0.2, 1.0, 0.4),
        frozenset({"glucose", "obese"}),
    ),
    CatalogueItem(
        "glucose-self-monitoring",
        "Blood glucose self-monitoring",
        "intervention",
        "Finger-prick fasting and post-meal glucose readings with a logbook or app.",
        (0.1, 1.0, 0.3, 0.2),
        frozenset({"glucose"}),
    ),
    CatalogueItem(
        "prenatal-exercise",
        "Prenatal exercise programme",
        "intervention",
        "150 minutes a week of moderate activity: walking, swimming, prenatal classes.",
        (0.0, 0.1, 1.0, 0.2),
        frozenset({"any", "overweight", "obese", "glucose"}),
    ),
    CatalogueItem(
        "smoking-cessation-support",
        "Smoking cessation support",
        "intervention",
        "Brief advice, counselling sessions and a quit date; nicotine replacement when needed.",
        (0.3, 0.1, 1.0, 0.4),
        frozenset({"tobacco"}),
        pregnancy_only=False,
    ),
    CatalogueItem(
        "alcohol-reduction",
        "Alcohol and substance counselling",
        "intervention",
        "Brief intervention and referral for alcohol or substance use.",
        (0.0, 0.1, 1.0, 0.5),
        frozenset({"substance"}),
        pregnancy_only=False,
    ),
    CatalogueItem(
        "caffeine-reduction",
        "Caffeine reduction",
        "guidance_topic",
        "Keep caffeine under 300 mg a day: switching drinks, spacing coffee.",
        (0.0, 0.0, 1.0, 0.3),
        frozenset({"caffeine"}),
    ),
    CatalogueItem(
        "weight-gain-plan",
        "Gestational weight gain plan",
        "guidance_topic",
        "Target weight gain for her BMI category, with monthly weighing.",
        (0.0, 0.6, 0.8, 0.4),
        frozenset({"overweight", "obese", "underweight"}),
    ),
    CatalogueItem(
        "nutrition-counselling",
        "Healthy eating counselling",
        "guidance_topic",
        "Balanced diet in pregnancy, food safety, foods to avoid.",
        (0.0, 0.0, 0.6, 1.0),
        frozenset({"any"}),
    ),
    CatalogueItem(
        "sleep-hygiene",
        "Sleep and rest advice",
        "guidance_topic",
        "Side sleeping after 28 weeks, routines, managing discomfort.",
        (0.0, 0.0, 0.7, 0.7),
        frozenset({"sleep"}),
    ),
    CatalogueItem(
        "mental-health-support",
        "Perinatal mental health support",
        "intervention",
        "Screening follow-up, talking therapy, peer support groups.",
        (0.1, 0.2, 0.4, 0.8),
        frozenset({"any"}),
    ),
    CatalogueItem(
        "birth-preparation-classes",
        "Birth preparation classes",
        "guidance_topic",
        "Antenatal classes on labour, pain relief and birth plans.",
        (0.0, 0.0, 0.2, 1.0),
        frozenset({"any"}),
    ),
    CatalogueItem(
        "breastfeeding-preparation",
        "Breastfeeding preparation",
        "guidance_topic",
        "Antenatal breastfeeding information and a contact for support after birth.",
        (0.0, 0.0, 0.3, 1.0),
        frozenset({"any"}),
    ),
    CatalogueItem(
        "contraception-counselling",
        "Contraception counselling",
        "guidance_topic",
        "Choosing a method, including long-acting reversible contraception.",
        (0.5, 0.0, 0.2, 0.8),
        frozenset({"any"}),
        pregnancy_only=False,
    ),
    CatalogueItem(
        "cervical-screening",
        "Cervical screening reminders",
        "intervention",
        "Invitations and reminders for cervical screening at the recommended interval.",
        (0.0, 0.8, 0.0, 0.4),
        frozenset({"any"}),
        pregnancy_only=False,
    ),
)
