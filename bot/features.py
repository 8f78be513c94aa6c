"""What Kehou does for parents today, in one list (docs/UX.md, convention 7).

The /start welcome, /help and the 致家长的一封信 (Letter to parents) all show this list, so
they never promise a flow that does not exist. A flow adds its line here when it lands.
"""

from __future__ import annotations

from bot.i18n import N_

# Each line completes "With Kehou you can:" and stands alone as a bullet.
FEATURES = (
    N_("sign your child up for after-school courses, or take them out"),
    N_("tell the school when your child will miss a session or be picked up early"),
    N_("see your child's week and add it to your phone's calendar"),
    N_("hear at once if your child is missing from a session, and tell the teacher why"),
    N_("get one evening message about your child's day: attendance, pick-up, what the class did"),
    N_("get the school's notices at once or in one daily digest"),
    N_("see your child's bill line by line, each item as the school disclosed it"),
    N_("rate each course at term end with your child, anonymously"),
    N_(
        "get your child's growth record each term: courses, attendance, interests, teachers' "
        "notes and advice"
    ),
    N_("choose whether your child may appear in photos teachers share"),
    N_("name the adults who may collect your child, and be told when your child leaves"),
    N_("see everything Kehou holds about you, and delete it"),
)

# One name for the printed invitation, everywhere: on the letter, in the bot, in the docs.
LETTER = N_("Letter to parents")
