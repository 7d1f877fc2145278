"""Plausible place names for the generated city: pools of syllables with their pinyin, drawn with a seeded RNG.

Names are built the way Jiaodong names are: streets and towns from two-syllable words (向阳, 黄务), villages from
a family name (王家庄, 姜格庄), residential compounds from an auspicious word and a kind (阳光花园, 海韵小区).
English names are the pinyin, as on the city's own road signs.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Syllables = tuple[tuple[str, str], ...]

# Two-character words first: they read like real place names; single syllables pad the pool.
PLACE_WORDS: Syllables = (
    ("向阳", "Xiangyang"), ("东山", "Dongshan"), ("毓璜", "Yuhuang"), ("通伸", "Tongshen"), ("白石", "Baishi"),
    ("芝罘", "Zhifu"), ("幸福", "Xingfu"), ("只楚", "Zhichu"), ("世回", "Shihui"), ("黄务", "Huangwu"),
    ("初家", "Chujia"), ("滨海", "Binhai"), ("解甲", "Jiejia"), ("莱山", "Laishan"), ("院格", "Yuange"),
    ("马山", "Mashan"), ("清泉", "Qingquan"), ("奇山", "Qishan"), ("西城", "Xicheng"), ("东城", "Dongcheng"),
    ("南山", "Nanshan"), ("北关", "Beiguan"), ("新华", "Xinhua"), ("文化", "Wenhua"), ("振华", "Zhenhua"),
    ("凤凰", "Fenghuang"), ("龙泉", "Longquan"), ("金山", "Jinshan"), ("银湖", "Yinhu"), ("桃村", "Taocun"),
    ("观里", "Guanli"), ("庙后", "Miaohou"), ("松山", "Songshan"), ("寺口", "Sikou"), ("苏家", "Sujia"),
    ("唐家", "Tangjia"), ("亭口", "Tingkou"), ("翠屏", "Cuiping"), ("杨础", "Yangchu"), ("官道", "Guandao"),
    ("西由", "Xiyou"), ("平里", "Pingli"), ("沙河", "Shahe"), ("朱桥", "Zhuqiao"), ("金城", "Jincheng"),
    ("夏邱", "Xiaqiu"), ("程郭", "Chengguo"), ("驿道", "Yidao"), ("虎山", "Hushan"), ("柞村", "Zuocun"),
    ("团旺", "Tuanwang"), ("穴坊", "Xuefang"), ("羊郡", "Yangjun"), ("姜疃", "Jiangtuan"), ("万第", "Wandi"),
    ("照旺", "Zhaowang"), ("河洛", "Heluo"), ("大辛", "Daxin"), ("留格", "Liuge"), ("盘石", "Panshi"),
    ("郭城", "Guocheng"), ("发城", "Facheng"), ("行村", "Xingcun"), ("辛安", "Xin'an"), ("朱吴", "Zhuwu"),
    ("龙山", "Longshan"), ("东江", "Dongjiang"), ("兰高", "Langao"), ("诸由", "Zhuyou"), ("北马", "Beima"),
    ("芦头", "Lutou"), ("下丁", "Xiading"), ("七甲", "Qijia"), ("石良", "Shiliang"), ("徐福", "Xufu"),
    ("登州", "Dengzhou"), ("紫荆", "Zijing"), ("南王", "Nanwang"), ("刘家", "Liujia"), ("大季", "Daji"),
    ("村里", "Cunli"), ("北沟", "Beigou"), ("小门", "Xiaomen"), ("大柳", "Daliu"), ("泉山", "Quanshan"),
    ("罗峰", "Luofeng"), ("梦芝", "Mengzhi"), ("温泉", "Wenquan"), ("大秦", "Daqin"), ("辛庄", "Xinzhuang"),
    ("张星", "Zhangxing"), ("玲珑", "Linglong"), ("阜山", "Fushan"), ("毕郭", "Biguo"), ("蛇窝", "Shewo"),
    ("大庄", "Dazhuang"), ("庙岛", "Miaodao"), ("砣矶", "Tuoji"), ("钦岛", "Qindao"), ("大黑", "Dahei"),
    ("福新", "Fuxin"), ("清洋", "Qingyang"), ("门楼", "Menlou"), ("回里", "Huili"), ("高疃", "Gaotuan"),
    ("八角", "Bajiao"), ("大季家", "Dajijia"), ("古现", "Guxian"), ("潮水", "Chaoshui"), ("宁海", "Ninghai"),
    ("文化园", "Wenhuayuan"), ("养马", "Yangma"), ("姜格", "Jiangge"), ("水道", "Shuidao"), ("玉林", "Yulin"),
)

SURNAMES: Syllables = (
    ("王", "Wang"), ("张", "Zhang"), ("李", "Li"), ("刘", "Liu"), ("孙", "Sun"), ("姜", "Jiang"), ("曲", "Qu"),
    ("于", "Yu"), ("宋", "Song"), ("郝", "Hao"), ("林", "Lin"), ("杨", "Yang"), ("赵", "Zhao"), ("徐", "Xu"),
    ("初", "Chu"), ("衣", "Yi"), ("战", "Zhan"), ("隋", "Sui"), ("鞠", "Ju"), ("栾", "Luan"), ("慕", "Mu"),
    ("邹", "Zou"), ("修", "Xiu"), ("宫", "Gong"), ("丛", "Cong"), ("迟", "Chi"), ("臧", "Zang"), ("滕", "Teng"),
)
VILLAGE_ENDINGS: Syllables = (
    ("家庄", "jiazhuang"), ("家疃", "jiatuan"), ("格庄", "gezhuang"), ("家沟", "jiagou"),
    ("家洼", "jiawa"), ("家夼", "jiakuang"), ("家埠", "jiabu"), ("家店", "jiadian"), ("家岭", "jialing"),
)
VILLAGE_PREFIXES: Syllables = (("东", "Dong"), ("西", "Xi"), ("南", "Nan"), ("北", "Bei"), ("上", "Shang"),
                               ("下", "Xia"), ("前", "Qian"), ("后", "Hou"), ("大", "Da"), ("小", "Xiao"))

COMPOUND_WORDS: Syllables = (
    ("阳光", "Yangguang"), ("海韵", "Haiyun"), ("金色", "Jinse"), ("碧海", "Bihai"), ("翠园", "Cuiyuan"),
    ("锦绣", "Jinxiu"), ("御景", "Yujing"), ("怡海", "Yihai"), ("蓝湾", "Lanwan"), ("山水", "Shanshui"),
    ("世纪", "Shiji"), ("盛世", "Shengshi"), ("东方", "Dongfang"), ("万科", "Wanke"), ("福泰", "Futai"),
    ("康和", "Kanghe"), ("瑞祥", "Ruixiang"), ("丽景", "Lijing"), ("滨海", "Binhai"), ("天润", "Tianrun"),
    ("鲁东", "Ludong"), ("芝兰", "Zhilan"), ("银河", "Yinhe"), ("枫林", "Fenglin"), ("紫金", "Zijin"),
    ("青年", "Qingnian"), ("和平", "Heping"), ("新城", "Xincheng"), ("中海", "Zhonghai"), ("海天", "Haitian"),
    ("明珠", "Mingzhu"), ("香榭", "Xiangxie"), ("凤鸣", "Fengming"), ("清华", "Qinghua"), ("星海", "Xinghai"),
    ("福地", "Fudi"), ("盛泉", "Shengquan"), ("海上", "Haishang"), ("绿城", "Lücheng"), ("润和", "Runhe"),
    ("观澜", "Guanlan"), ("嘉和", "Jiahe"), ("书香", "Shuxiang"), ("兴业", "Xingye"), ("恒大", "Hengda"),
    ("融科", "Rongke"), ("金沙", "Jinsha"), ("百合", "Baihe"), ("幸福", "Xingfu"), ("祥和", "Xianghe"),
    ("海悦", "Haiyue"), ("东海", "Donghai"), ("南山", "Nanshan"), ("北岸", "Bei'an"), ("金海", "Jinhai"),
    ("春晖", "Chunhui"), ("朝阳", "Chaoyang"), ("学府", "Xuefu"), ("华府", "Huafu"), ("龙湖", "Longhu"),
)
COMPOUND_KINDS: Syllables = (("小区", "Residential Area"), ("花园", "Garden"), ("家园", "Homes"), ("苑", "Court"),
                             ("公寓", "Apartments"), ("新村", "New Village"), ("嘉园", "Jiayuan"))
COMMUNITY_ENDINGS: Syllables = (("", ""), ("路", "lu"), ("里", "li"), ("苑", "yuan"), ("园", "yuan"), ("街", "jie"))


def _unique(rng: random.Random, taken: set[str], make: Callable[[random.Random], tuple[str, str]]) -> tuple[str, str]:
    """Draw names until one is not taken; after many tries accept a numbered variant (never loops for ever)."""
    for _ in range(500):
        zh, en = make(rng)
        if zh not in taken:
            taken.add(zh)
            return zh, en
    zh, en = make(rng)
    number = 2
    while f"{zh}{number}期" in taken:
        number += 1
    taken.add(f"{zh}{number}期")
    return f"{zh}{number}期", f"{en} Phase {number}"


def street_name(rng: random.Random, taken: set[str], rural: bool) -> tuple[str, str]:
    """A street office (街道) in town, a town (镇) in the countryside."""
    zh_kind, en_kind = ("镇", "Town") if rural else ("街道", "Street")
    word, pinyin = _unique(rng, taken, lambda r: r.choice(PLACE_WORDS + COMPOUND_WORDS))
    return f"{word}{zh_kind}", f"{pinyin} {en_kind}"


def community_name(rng: random.Random, taken: set[str], village: bool) -> tuple[str, str]:
    """A residents' committee (社区) or a village (村)."""
    if village:
        zh, en = _unique(rng, taken, _village_word)
        return f"{zh}村", f"{en} Village"
    zh, en = _unique(rng, taken, _community_word)
    return f"{zh}社区", f"{en} Community"


def _village_word(rng: random.Random) -> tuple[str, str]:
    surname, ending = rng.choice(SURNAMES), rng.choice(VILLAGE_ENDINGS)
    if rng.random() < 0.3:
        prefix = rng.choice(VILLAGE_PREFIXES)
        return f"{prefix[0]}{surname[0]}{ending[0]}", f"{prefix[1]}{surname[1].lower()}{ending[1]}"
    return f"{surname[0]}{ending[0]}", f"{surname[1]}{ending[1]}"


def _community_word(rng: random.Random) -> tuple[str, str]:
    word, ending = rng.choice(PLACE_WORDS + COMPOUND_WORDS), rng.choice(COMMUNITY_ENDINGS)
    return f"{word[0]}{ending[0]}", f"{word[1]}{ending[1]}"


def compound_name(rng: random.Random, taken: set[str]) -> tuple[str, str]:
    """A residential compound (小区): buildings in it are numbered 1号楼, 2号楼, ..."""

    def make(r: random.Random) -> tuple[str, str]:
        word, kind = r.choice(COMPOUND_WORDS), r.choice(COMPOUND_KINDS)
        return f"{word[0]}{kind[0]}", f"{word[1]} {kind[1]}"

    return _unique(rng, taken, make)
