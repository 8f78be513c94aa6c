"""Regenerate the demo school: ``python -m bot.demo.generate`` writes school.yaml and students.csv.

Everything is fictional: 河清实验学校 does not exist, and the names are drawn from common
surnames and given-name characters by a seeded random generator, so the output is the same on
every run. The holidays follow the State Council General Office's notice of 2025-11-04 on the
2026 holidays; 2027 New Year's Day is assumed, as its arrangement is published in late 2026.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SEED = 20260901
CN_DIGITS = "零一二三四五六七八九"

# Surnames roughly in order of frequency; the weights make the common ones common.
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
)
CHILD_CHARS = (
    "子梓浩宇轩涵欣怡雨泽博文俊晨思佳一嘉诗可若睿铭琪瑶悦梦家明天昊然晗彤萱妍安宁乐辰航皓峻锦"
    "沐朗语清书瑾雅婉凯鹏毅宸奕煜逸桐芮蕊琳晴诺依昕航烁哲楷彬悠芷伊航骏熙知远星"
)
ADULT_GIVEN = (
    "建华 丽娟 海燕 志强 秀英 晓东 红梅 国庆 文静 永刚 雪梅 春生 丽萍 卫东 晓燕 建军 桂兰 学军 "
    "慧敏 俊峰 玉兰 振华 淑芬 立新 艳红 宏伟 晓丽 东升 静 敏 磊 洁 勇 娜 涛 霞"
).split()


def chinese_name(rng: random.Random, given: Sequence[str] | None = None) -> str:
    weights = [1 / (i + 4) for i in range(len(SURNAMES))]
    surname = rng.choices(SURNAMES, weights)[0]
    if given is not None:
        return surname + rng.choice(given)
    length = 1 if rng.random() < 0.25 else 2
    chars = rng.sample(CHILD_CHARS, length)
    return surname + "".join(chars)


# --- the school ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Klass:
    code: str
    grade: int
    number: int
    name: str
    head_teacher: str


def grade_name(grade: int) -> str:
    return f"{CN_DIGITS[grade]}年级"


CLASSES_PER_GRADE = {1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: 3, 7: 2, 8: 2, 9: 2}


def make_classes() -> list[Klass]:
    classes = []
    head = 1
    for grade, count in CLASSES_PER_GRADE.items():
        for number in range(1, count + 1):
            classes.append(
                Klass(
                    f"{grade}-{number}",
                    grade,
                    number,
                    f"{grade_name(grade)}{number}班",
                    f"T{head:02d}",
                )
            )
            head += 1
    return classes


# Subject teachers beyond the 24 head teachers (班主任), by code: what they teach.
SUBJECT_STAFF = {
    "T25": "科学",
    "T26": "物理/生物",
    "T27": "体育（小学）",
    "T28": "音乐",
    "T29": "美术",
    "T30": "心理健康",
    "T31": "信息技术",
    "T32": "语文",
    "T33": "体育（初中）",
    "T34": "劳动与综合实践",
}

PROVIDERS: list[dict[str, Any]] = [
    {"code": "QIZHI", "name": "河清启智科技教育有限公司", "kind": "outside",
     "whitelist_status": "whitelisted", "contract_starts_on": dt.date(2026, 8, 15),
     "contract_ends_on": dt.date(2027, 1, 31), "contact": "周经理（项目负责人）"},
    {"code": "SHANGWU", "name": "河清市尚武少年武术俱乐部", "kind": "outside",
     "whitelist_status": "whitelisted", "contract_starts_on": dt.date(2026, 8, 15),
     "contract_ends_on": dt.date(2027, 1, 31), "contact": "孙教练"},
    {"code": "TAORAN", "name": "陶然陶艺工作室", "kind": "outside",
     "whitelist_status": "whitelisted", "contract_starts_on": dt.date(2026, 8, 20),
     "contract_ends_on": dt.date(2027, 1, 31), "contact": "林老师"},
    {"code": "MOYUN", "name": "墨韵书画培训中心", "kind": "outside",
     "whitelist_status": "pending", "contact": "白女士"},
    {"code": "JINBANG", "name": "金榜学科辅导中心", "kind": "outside",
     "whitelist_status": "blacklisted"},
]  # fmt: skip

# Outside instructors: code -> (kind, provider, what they do, credentials checked).
OUTSIDE_TEACHERS = {
    "R01": ("retired", None, "退休数学教师，象棋", True),
    "R02": ("retired", None, "退休语文教师，经典诵读", True),
    "V01": ("volunteer", None, "河清师范学院英语专业志愿者", True),
    "V02": ("volunteer", None, "河清师范学院舞蹈专业志愿者", True),
    "V03": ("volunteer", None, "河清师范学院天文社志愿者", True),
    "H01": ("heritage", None, "剪纸非遗传承人", True),
    "H02": ("heritage", None, "豫剧非遗传承人", True),
    "K01": ("provider", "QIZHI", "机器人与无人机教练", True),
    "K02": ("provider", "QIZHI", "编程教练", True),
    "K03": ("provider", "SHANGWU", "武术教练", True),
    "K04": ("provider", "TAORAN", "陶艺师", True),
    # Applied with a provider still under review: on file, but may not teach yet.
    "K05": ("provider", "MOYUN", "书法教练", False),
}

# Fee standards (收费公示). The figures are plausible, not real: Chinese cities typically charge
# 2-4 yuan per hour of after-school service; 280 yuan for the enrichment period over the ~90
# service days of an autumn term is about 3 yuan per hour. Homework help and flexible dismissal
# (弹性离校) are free: the notices forbid charging for the latter.
DISCLOSED = dt.date(2026, 8, 20)
FEES: list[dict[str, Any]] = [
    {"code": "BASIC", "name": "课后服务第一时段（课业辅导）", "amount": "0", "unit": "term",
     "covers": "period1", "disclosed_on": DISCLOSED,
     "description": "第一时段课业辅导由财政保障，不收费。"},
    {"code": "SVC", "name": "课后服务费（第二时段素质拓展）", "amount": "280.00", "unit": "term",
     "covers": "period2", "approval_ref": "河发改收费〔2026〕18号", "disclosed_on": DISCLOSED,
     "description": "自愿参加，按学期收取；家庭经济困难学生减免。"},
    {"code": "FLEX", "name": "弹性离校看护", "amount": "0", "unit": "term",
     "covers": "free", "disclosed_on": DISCLOSED,
     "description": "属于学校正常管理，按规定不收费。"},
    {"code": "QIZHI-MAT", "name": "科技课程材料费（代收）", "amount": "150.00", "unit": "term",
     "provider": "QIZHI", "disclosed_on": DISCLOSED,
     "description": "机器人、编程、无人机课程耗材，学校代收后转付机构。"},
    {"code": "WUSHU", "name": "武术课程服务费（代收）", "amount": "8.00", "unit": "session",
     "provider": "SHANGWU", "disclosed_on": DISCLOSED},
    {"code": "CLAY", "name": "陶艺材料费（代收）", "amount": "12.50", "unit": "month",
     "provider": "TAORAN", "disclosed_on": DISCLOSED},
    {"code": "TRIP", "name": "研学实践交通费（代收）", "amount": "25.00", "unit": "session",
     "disclosed_on": DISCLOSED, "description": "校车往返，按实际出行次数收取。"},
]  # fmt: skip

DEMO_CLASS = "3-2"  # the class of the demo's teacher and parents (sandbox/demo.py)
PRIMARY_P1, PRIMARY_P2 = "15:40-16:40", "16:50-17:50"
MIDDLE_P1, MIDDLE_P2 = "16:40-17:40", "17:50-18:40"
WEEK = ["mon", "tue", "wed", "thu", "fri"]


def homework_courses(classes: list[Klass]) -> list[dict[str, Any]]:
    """Period 1 per grade, run by the head teachers in their own classrooms.

    Grades 1-2 get no written homework under 双减, so their first period is reading instead.
    A grade's period 1 is led by the head teacher of its first class, except that grade 3's
    is led by the head of 3-2, the demo's class, so that the demo's teacher has sessions.
    """
    courses = []
    for grade in range(1, 10):
        lead = next(
            c for c in sorted(classes, key=lambda c: c.code != DEMO_CLASS) if c.grade == grade
        ).head_teacher
        reading = grade <= 2
        courses.append({
            "code": f"P1-G{grade}",
            "name": f"{grade_name(grade)}{'阅读与习惯养成' if reading else '课业辅导'}",
            "description": "自主阅读、习惯养成，不布置书面作业。" if reading
            else "独立完成作业、答疑辅导；不集体补课、不讲授新课。",
            "category": "reading" if reading else "homework",
            "period": 1,
            "grades": grade,
            "weekdays": WEEK,
            "time": PRIMARY_P1 if grade <= 6 else MIDDLE_P1,
            "venue": f"{grade_name(grade)}各班教室",
            "teacher": lead,
            "fee": "BASIC",
        })  # fmt: skip
    return courses


# Period 2 (enrichment): code | name | category | level | grades | weekdays | venue | teacher |
# provider | capacity | fee.  "-" means none.
ENRICHMENT = """
# Period 2: code, name, category, level, grades, weekdays, venue, teacher, provider, cap, fee.
# lower primary (grades 1-2)
SCI-L | 趣味科学实验 | science | entry | 1-2 | mon wed | 科学实验室一 | T25 | - | 40 | SVC
SPT-ROPE | 花样跳绳 | sports | - | 1-2 | tue thu | 操场东区 | T27 | - | 60 | SVC
ART-CUT | 剪纸（非遗） | arts | - | 1-4 | wed | 美术室二 | H01 | - | 30 | SVC
ART-DANCE | 少儿舞蹈 | arts | entry | 1-3 | mon wed | 舞蹈室 | V02 | - | 30 | SVC
READ-PIC | 英语绘本故事会 | reading | - | 1-2 | tue thu | 图书馆绘本区 | V01 | - | 35 | SVC
WB-SAFE | 安全小卫士 | wellbeing | - | 1-3 | fri | 多功能厅 | T30 | - | 80 | SVC
LAB-TIDY | 整理小能手 | labour | - | 1-2 | fri | 劳动实践室 | T34 | - | 40 | SVC
# primary (grades 3-6)
SCI-M | 科学小制作 | science | entry | 3-4 | tue thu | 科学实验室一 | T25 | - | 40 | SVC
SCI-ROBOT | 乐高机器人 | science | entry | 3-6 | mon | 创客空间 | K01 | QIZHI | 24 | QIZHI-MAT
SCI-CODE | 少儿编程 | science | advanced | 5-6 | wed | 计算机教室 | K02 | QIZHI | 24 | QIZHI-MAT
SCI-SKY | 气象与天文观测 | science | - | 5-6 | tue | 科学实验室二 | V03 | - | 30 | SVC
SPT-FOOT | 校园足球 | sports | - | 3-6 | mon wed fri | 足球场 | T27 | - | 40 | SVC
SPT-WUSHU | 少儿武术 | sports | entry | 1-6 | tue thu | 体育馆 | K03 | SHANGWU | 30 | WUSHU
SPT-CHESS | 中国象棋 | sports | - | 3-6 | wed | 棋艺室 | R01 | - | 30 | SVC
ART-CHOIR | 童声合唱团 | arts | - | 2-6 | tue thu | 音乐室 | T28 | - | 50 | SVC
ART-OPERA | 豫剧进校园（非遗） | arts | - | 3-6 | fri | 多功能厅 | H02 | - | 30 | SVC
ART-CLAY | 陶艺 | arts | - | 3-6 | thu | 陶艺室 | K04 | TAORAN | 20 | CLAY
ART-INK | 国画 | arts | - | 4-6 | mon | 美术室一 | T29 | - | 30 | SVC
LAB-FARM | 开心农场种植 | labour | - | 3-6 | tue | 校园种植园 | T34 | - | 40 | SVC
READ-CLASSIC | 经典诵读 | reading | - | 3-6 | mon wed | 阶梯教室 | R02 | - | 40 | SVC
WB-PSY | 心理成长小组 | wellbeing | - | 4-6 | thu | 心理辅导室 | T30 | - | 20 | SVC
OFF-MUSEUM | 博物馆研学 | off_campus | - | 4-6 | fri | 河清市博物馆（校车） | T32 | - | 40 | TRIP
# middle school (grades 7-9)
SCI-PHY | 物理探究实验 | science | advanced | 8-9 | tue | 物理实验室 | T26 | - | 40 | SVC
SCI-BIO | 生物标本制作 | science | - | 7-8 | thu | 生物实验室 | T26 | - | 30 | SVC
SCI-DRONE | 无人机编程 | science | advanced | 7-9 | wed | 创客空间 | K01 | QIZHI | 20 | QIZHI-MAT
SPT-BASKET | 篮球 | sports | - | 7-9 | mon wed | 篮球场 | T33 | - | 40 | SVC
SPT-TRACK | 田径 | sports | - | 7-9 | tue fri | 田径场 | T33 | - | 40 | SVC
ART-CALLI | 书法 | arts | - | 7-9 | thu | 书法室 | T29 | - | 30 | SVC
ART-BAND | 管乐团 | arts | advanced | 7-9 | fri | 音乐室 | T28 | - | 40 | SVC
LAB-COOK | 家常菜烹饪 | labour | - | 7-9 | mon | 劳动实践室 | T34 | - | 24 | SVC
READ-CLUB | 读书会与辩论 | reading | - | 7-9 | thu | 图书馆 | T32 | - | 30 | SVC
WB-TEEN | 青春期心理健康 | wellbeing | - | 7-9 | tue | 心理辅导室 | T30 | - | 40 | SVC
OFF-SERVE | 社区志愿服务 | off_campus | - | 7-9 | fri | 河清社区服务中心 | T21 | - | 30 | SVC
"""


def enrichment_courses() -> list[dict[str, Any]]:
    courses = []
    for line in ENRICHMENT.strip().splitlines():
        if line.startswith("#"):
            continue
        cells = [None if c == "-" else c for c in (c.strip() for c in line.split("|"))]
        code, name, category, level, grades, days, venue, teacher, provider, cap, fee = cells
        assert grades and days and cap, line
        middle = int(grades.split("-")[0]) >= 7
        course: dict[str, Any] = {"code": code, "name": name, "category": category, "period": 2}
        if level:
            course["level"] = level
        course |= {
            "grades": grades,
            "weekdays": days.split(),
            "time": MIDDLE_P2 if middle else PRIMARY_P2,
            "venue": venue,
            "teacher": teacher,
        }
        if provider:
            course["provider"] = provider
        course |= {"capacity": int(cap), "fee": fee}
        courses.append(course)
    return courses


CALENDAR = [
    (dt.date(2026, 9, 20), "workday", 3, "国庆节调休补班，按周三课表"),
    (dt.date(2026, 9, 25), "holiday", None, "中秋节"),
    *((dt.date(2026, 10, d), "holiday", None, "国庆节") for d in (1, 2, 5, 6, 7)),
    (dt.date(2026, 10, 10), "workday", 2, "国庆节调休补班，按周二课表"),
    (dt.date(2026, 10, 30), "no_service", None, "秋季运动会"),
    (dt.date(2026, 11, 12), "no_service", None, "期中考试"),
    (dt.date(2026, 11, 13), "no_service", None, "期中考试"),
    (dt.date(2027, 1, 1), "holiday", None, "元旦（以国务院2027年放假安排为准）"),
    (dt.date(2027, 1, 14), "no_service", None, "期末考试"),
    (dt.date(2027, 1, 15), "no_service", None, "期末考试"),
]


# --- rendering ----------------------------------------------------------------------------------


def scalar(value: Any) -> str:
    """A YAML scalar, quoted only when a plain one would be misread."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | dt.date | Decimal):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    text = str(value)
    plain_ok = not any(ch in text for ch in ",[]{}#:&*!|>'\"%@`") and text[:1] not in "-?"
    if plain_ok and yaml.safe_load(f"k: {text}") == {"k": text}:
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(item: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in item.items() if v is not None) + "}"


def block(items: Iterable[dict[str, Any]], indent: str = "  ") -> list[str]:
    lines: list[str] = []
    for item in items:
        first = True
        for key, value in item.items():
            if value is None:
                continue
            lines.append(f"{indent}{'- ' if first else '  '}{key}: {scalar(value)}")
            first = False
        lines.append("")
    return lines


def render_yaml(classes: list[Klass], teachers: list[dict[str, Any]]) -> str:
    out = [
        "# 河清实验学校: a fictional demo school for Kehou.",
        "# Regenerate with: python -m bot.demo.generate",
        "# Format: docs/IMPORT.md.  Import: kehou import bot/demo/school.yaml",
        "",
        "school:",
        "  code: heqing",
        "  name: 河清实验学校",
        "  timezone: Asia/Shanghai",
        "  default_locale: zh_CN",
        "",
        "term:",
        "  name: 2026-2027学年第一学期",
        "  starts_on: 2026-09-01",
        "  ends_on: 2027-01-20",
        "  # Naive times are Beijing time (the school's timezone).",
        '  enrolment_opens_at: "2026-08-24 08:00"',
        '  enrolment_closes_at: "2026-09-04 20:00"',
        "  schedule_published_on: 2026-08-21   # 课后服务安排表 public before term start",
        "  rating_opens_on: 2027-01-11",
        "  rating_closes_on: 2027-01-19",
        "",
        "# Exceptions to the weekly timetable. The 2026 dates follow the State Council's",
        "# holiday notice; make-up workdays (调休补班) run the named weekday's timetable",
        "# (1 = Monday).",
        "calendar:",
    ]
    for day, kind, runs, note in CALENDAR:
        item = {"date": day, "kind": kind, "runs_weekday": runs, "note": note}
        out.append(f"  - {flow(item)}   # {day:%a}")
    out += [
        "",
        "# Outside providers (社会力量). Only whitelisted ones may run courses. MOYUN is",
        "# under review and JINBANG (subject tutoring, banned under 双减) is blacklisted:",
        "# both are on file, neither runs a course.",
        "providers:",
        *block(PROVIDERS),
        "teachers:",
    ]
    out += [f"  - {flow(t)}   # {teacher_role(t['code'], classes)}" for t in teachers]
    out += ["", "classes:"]
    for c in classes:
        item = {"code": c.code, "grade": c.grade, "name": c.name, "head_teacher": c.head_teacher}
        out.append(f"  - {flow(item)}")
    out += [
        "",
        "# The roster lives in a separate file, as schools keep it (学号, 姓名, 班级).",
        "students:",
        "  file: students.csv",
        "",
        "# Disclosed fee standards (收费公示), amounts in yuan. 代收费 items name their provider.",
        "# Figures are plausible, not real: cities typically charge 2-4 yuan per service hour.",
        "fees:",
        # Amounts are written as numbers (YAML would also accept "12.50" in quotes).
        *block({**fee, "amount": Decimal(fee["amount"])} for fee in FEES),
        "# Period 1 (第一时段) is homework help; period 2 (第二时段) is enrichment (素质拓展).",
        "# Primary: 15:40-16:40 and 16:50-17:50; middle school: 16:40-17:40 and 17:50-18:40.",
        "courses:",
        *block(homework_courses(classes)),
        *block(enrichment_courses()),
    ]
    return "\n".join(out).rstrip() + "\n"


def teacher_role(code: str, classes: list[Klass]) -> str:
    heads = [c.name for c in classes if c.head_teacher == code]
    if heads:
        return f"班主任 {heads[0]}"
    if code in SUBJECT_STAFF:
        return SUBJECT_STAFF[code]
    return OUTSIDE_TEACHERS[code][2]


def make_teachers(rng: random.Random) -> list[dict[str, Any]]:
    teachers: list[dict[str, Any]] = []
    for number in range(1, 35):
        code = f"T{number:02d}"
        teacher = {"code": code, "name": chinese_name(rng, ADULT_GIVEN), "kind": "staff"}
        teachers.append(teacher)
    for code, (kind, provider, _role, checked) in OUTSIDE_TEACHERS.items():
        teachers.append({
            "code": code, "name": chinese_name(rng, ADULT_GIVEN), "kind": kind,
            "provider": provider, "credentials_checked": checked,
        })  # fmt: skip
    return teachers


def make_students(rng: random.Random, classes: list[Klass]) -> list[tuple[str, str, str]]:
    """学号 = entry year + stage (1 primary, 2 middle) + class number + seat, e.g. 202410205."""
    students = []
    for klass in classes:
        middle = klass.grade >= 7
        entry_year = 2026 - (klass.grade - (7 if middle else 1))
        for seat in range(1, rng.randint(24, 28) + 1):
            number = f"{entry_year}{2 if middle else 1}{klass.number:02d}{seat:02d}"
            students.append((number, chinese_name(rng), klass.code))
    return students


def main(directory: Path = HERE) -> None:
    rng = random.Random(SEED)
    classes = make_classes()
    teachers = make_teachers(rng)
    students = make_students(rng, classes)
    (directory / "school.yaml").write_text(render_yaml(classes, teachers), encoding="utf-8")
    with (directory / "students.csv").open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp, lineterminator="\n")
        writer.writerow(["学号", "姓名", "班级"])
        writer.writerows(students)
    print(f"wrote {len(classes)} classes, {len(teachers)} teachers, {len(students)} students")


if __name__ == "__main__":
    main()
