"""The generated city's bureaus and its responsibility list (职责清单): 1,326 matters from domain templates x objects.

A matter is an object a bureau is responsible for (电梯, 农贸市场, 公积金贷款) crossed with a kind of problem residents
call about (损坏, 乱收费, 办理拖延). Each kind of problem brings its wording (Chinese and English names and seed
phrases for the classifier), its time limits, who assists (noise -> the environment bureau, overcharging -> market
supervision) and at which level it is handled: a policy enquiry is answered by the city bureau, a broken lift by the
bureau's branch in the district where it is (``lead_branch_of``), a cluttered stairwell by the grid worker
(``lead_by_area``). The small catalogue's 68 categories are kept with their codes, so the NYC mapping and trained
models stay valid on the big city.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

TOTAL_MATTERS = 1_326


@dataclass(frozen=True)
class Bureau:
    id: str
    name: str  # 市住房和城乡建设局
    name_en: str
    branches: str  # "all" districts, "core" (not the zones or Changdao), or "none" (a city-wide utility)
    fenju: bool = False  # branches are named 市X局芝罘分局 (police, environment...) rather than 芝罘区X局


BUREAUS: tuple[Bureau, ...] = (
    Bureau("city-management", "市城市管理局", "City Management Bureau", "all"),
    Bureau("housing", "市住房和城乡建设局", "Housing and Urban-Rural Development Bureau", "all"),
    Bureau("water", "市水务集团", "City Water Group", "none"),
    Bureau("power", "国网烟台供电公司", "State Grid Yantai Power Supply Company", "core"),
    Bureau("gas", "市燃气集团", "City Gas Group", "none"),
    Bureau("heating", "市热力集团", "City Heating Group", "none"),
    Bureau("transport", "市交通运输局", "Transport Bureau", "core"),
    Bureau("environment", "市生态环境局", "Ecology and Environment Bureau", "all", fenju=True),
    Bureau("market-supervision", "市市场监督管理局", "Market Supervision Administration", "all", fenju=True),
    Bureau("education", "市教育局", "Education Bureau", "core"),
    Bureau("health", "市卫生健康委员会", "Health Commission", "core"),
    Bureau("social-security", "市人力资源和社会保障局", "Human Resources and Social Security Bureau", "core"),
    Bureau("public-security", "市公安局（非紧急警务）", "Public Security Bureau (non-emergency)", "all", fenju=True),
    Bureau("civil-affairs", "市民政局", "Civil Affairs Bureau", "core"),
    Bureau("natural-resources", "市自然资源和规划局", "Natural Resources and Planning Bureau", "all", fenju=True),
    Bureau("agriculture", "市农业农村局", "Agriculture and Rural Affairs Bureau", "core"),
    Bureau("emergency", "市应急管理局", "Emergency Management Bureau", "all"),
    Bureau("culture-tourism", "市文化和旅游局", "Culture and Tourism Bureau", "core"),
    Bureau("commerce", "市商务局", "Commerce Bureau", "core"),
    Bureau("medical-security", "市医疗保障局", "Medical Security Bureau", "core"),
    Bureau("veterans", "市退役军人事务局", "Veterans Affairs Bureau", "core"),
    Bureau("ocean-fishery", "市海洋发展和渔业局", "Ocean Development and Fishery Bureau", "core"),
    Bureau("approval", "市行政审批服务局", "Administrative Approval Service Bureau", "core"),
    Bureau("taxation", "国家税务总局烟台市税务局", "Yantai Tax Service", "all", fenju=True),
    Bureau("fire", "市消防救援支队", "Fire and Rescue Detachment", "all"),
    Bureau("water-resources", "市水利局", "Water Resources Bureau", "core"),
    Bureau("justice", "市司法局", "Justice Bureau", "core"),
    Bureau("housing-fund", "市住房公积金管理中心", "Housing Provident Fund Centre", "core", fenju=True),
    Bureau("communications", "市通信管理办公室", "Communications Administration Office", "none"),
)
ZONES = ("kaifa", "gaoxin", "changdao")


@dataclass(frozen=True)
class Problem:
    slug: str
    name: str  # "{o}损坏"
    name_en: str
    keywords_zh: tuple[str, ...]
    keywords_en: tuple[str, ...]
    limits: tuple[str, str, str]
    co: str | None = None  # the bureau that assists, when it is not the lead itself
    city_level: bool = False  # answered by the city bureau itself, wherever the caller is
    consult: bool = False  # genuinely multi-party


P = Problem
PROBLEMS: dict[str, Problem] = {p.slug: p for p in (
    P("broken", "{o}损坏", "Damaged or broken {o}",
      ("{o}坏了", "{o}损坏没人修"),
      ("{o} broken", "damaged {o} not repaired"), ("1wd", "2wd", "5wd")),
    P("hazard", "{o}安全隐患", "Safety hazard at {o}",
      ("{o}有安全隐患", "{o}太危险了"),
      ("{o} is dangerous", "safety hazard at {o}"), ("2h", "4h", "3wd"), co="emergency"),
    P("unlicensed", "{o}无证经营", "Unlicensed {o}",
      ("{o}没有营业执照", "无证{o}"),
      ("unlicensed {o}", "{o} without a licence"), ("1wd", "3wd", "15wd"), co="market-supervision"),
    P("overcharge", "{o}乱收费", "Overcharging by {o}",
      ("{o}乱收费", "{o}收费不合理"),
      ("{o} overcharging", "unreasonable fees of {o}"), ("1wd", "3wd", "15wd"), co="market-supervision"),
    P("service", "{o}服务差", "Poor service of {o}",
      ("{o}服务态度恶劣", "{o}工作人员态度差"),
      ("rude staff of {o}", "poor service of {o}"), ("1wd", "3wd", "10wd")),
    P("consult", "{o}政策咨询", "Enquiry about {o}",
      ("{o}怎么办理", "咨询{o}政策"),
      ("how to apply for {o}", "question about {o} rules"), ("1wd", "1wd", "5wd"), city_level=True),
    P("delay", "{o}办理拖延", "Delay in processing {o}",
      ("{o}迟迟办不下来", "{o}拖了很久没结果"),
      ("{o} delayed", "waiting too long for {o}"), ("1wd", "2wd", "10wd")),
    P("noise", "{o}噪音扰民", "Noise from {o}",
      ("{o}噪音太大", "{o}吵得睡不着"),
      ("noise from {o}", "{o} too loud at night"), ("2h", "1wd", "5wd"), co="environment"),
    P("pollution", "{o}污染", "Pollution from {o}",
      ("{o}偷排污水", "{o}污染严重"),
      ("pollution from {o}", "{o} discharging waste"), ("1wd", "2wd", "10wd"), co="environment", consult=True),
    P("occupation", "{o}占道", "{o} occupying the road",
      ("{o}占道", "{o}堵住了路"),
      ("{o} blocking the road", "{o} on the pavement"), ("2h", "4h", "2wd"), co="city-management"),
    P("subsidy", "{o}补贴未发放", "{o} allowance not paid",
      ("{o}补贴没发", "{o}补助一直没到账"),
      ("{o} allowance not paid", "{o} subsidy missing"), ("1wd", "3wd", "15wd")),
    P("quality", "{o}质量问题", "Quality problem with {o}",
      ("{o}质量有问题", "{o}质量太差"),
      ("faulty {o}", "poor quality {o}"), ("1wd", "3wd", "15wd"), co="market-supervision"),
    P("outage", "{o}中断", "{o} cut off",
      ("{o}停了", "{o}突然中断"),
      ("no {o}", "{o} cut off"), ("30m", "2h", "24h")),
    P("illegal-build", "{o}违法占用", "Illegal use of {o}",
      ("私占{o}", "违规占用{o}搭建"),
      ("{o} illegally occupied", "illegal structure on {o}"), ("1wd", "3wd", "15wd"), co="city-management", consult=True),
    P("fraud", "{o}欺诈", "Fraud by {o}",
      ("{o}骗人", "被{o}骗了"),
      ("scam by {o}", "cheated by {o}"), ("1wd", "2wd", "15wd"), co="public-security"),
    P("wages", "{o}拖欠工资", "Unpaid wages at {o}",
      ("{o}拖欠工资", "{o}不发工资"),
      ("unpaid wages at {o}", "{o} owes wages"), ("1wd", "3wd", "15wd")),
    P("missing", "{o}缺失", "Missing {o}",
      ("没有配{o}", "{o}不见了"),
      ("missing {o}", "no {o} provided"), ("1wd", "2wd", "10wd")),
    P("dirty", "{o}卫生差", "Unsanitary {o}",
      ("{o}很脏", "{o}卫生太差"),
      ("dirty {o}", "unsanitary {o}"), ("1wd", "2wd", "5wd")),
)}


@dataclass(frozen=True)
class Domain:
    code: str  # the categories' code prefix
    lead: str  # a bureau id, or "area:<level>" for matters of the ticket's own grid/community/street
    objects: tuple[tuple[str, str, str], ...]  # (slug, 中文, English)
    problems: tuple[str, ...]


def _objects(text: str) -> tuple[tuple[str, str, str], ...]:
    """``"lift:电梯:lift; ..."`` -> ((slug, zh, en), ...): one line per object keeps the table readable."""
    return tuple(tuple(part.strip() for part in item.split(":")) for item in text.split(";") if item.strip())  # type: ignore[misc]


D = Domain
DOMAINS: tuple[Domain, ...] = (
    D("city-management", "city-management", _objects(
        "public-toilet:公厕:public toilet; transfer-station:垃圾中转站:garbage transfer station;"
        "litter-bin:果皮箱:litter bin; billboard:户外广告牌:outdoor billboard; shop-sign:门头牌匾:shop sign;"
        "decorative-lights:景观灯:decorative lighting; park:公园:park; pocket-park:街头游园:pocket park;"
        "night-market:夜市摊点:night-market stall; sprinkler-truck:洒水车:street sprinkler truck;"
        "muck-truck:渣土车:muck truck; drain-well:雨污井:drainage well"),
      ("broken", "hazard", "dirty", "occupation", "noise", "illegal-build")),
    D("housing", "housing", _objects(
        "lift:电梯:lift; stairwell:楼道:stairwell; exterior-wall:外墙:exterior wall;"
        "roof:屋面防水:roof waterproofing; garage:地下车库:underground car park;"
        "door-access:单元门禁:entrance access control; water-tank:二次供水设施:secondary water supply tank;"
        "cctv:小区监控:compound CCTV; fire-lane:消防通道:fire lane; septic-tank:化粪池:septic tank;"
        "repair-fund:公共维修资金:maintenance fund; new-flat:商品房:new flat;"
        "renovation:老旧小区改造:old compound renovation; property-company:物业公司:property company"),
      ("broken", "hazard", "overcharge", "service", "delay", "quality", "consult")),
    D("water", "water", _objects(
        "tap-water:自来水:tap water; main:供水管网:water main; meter:水表:water meter;"
        "hydrant:消火栓:fire hydrant; pump-room:二次加压泵房:booster pump room; sewer:污水管道:sewer"),
      ("outage", "broken", "quality", "overcharge", "service", "hazard")),
    D("power", "power", _objects(
        "electricity:电力:electricity; transformer:变压器:transformer; pole:电线杆:power pole;"
        "charger:充电桩:EV charging post; meter:电表:electricity meter; hv-line:高压线:high-voltage line"),
      ("outage", "broken", "hazard", "overcharge", "service", "noise")),
    D("gas", "gas", _objects(
        "supply:燃气:gas supply; pipe:燃气管道:gas pipe; meter:燃气表:gas meter; lpg:液化气站:LPG station;"
        "alarm:燃气报警器:gas alarm"),
      ("outage", "hazard", "overcharge", "service", "broken", "quality")),
    D("heating", "heating", _objects(
        "heating:暖气:heating; pipes:供热管网:heating pipes; exchange-station:换热站:heat exchange station;"
        "radiator:暖气片:radiator"),
      ("outage", "broken", "overcharge", "service", "hazard", "noise")),
    D("transport", "transport", _objects(
        "bus-route:公交线路:bus route; bus-stop:公交站牌:bus stop sign; taxi:出租车:taxi;"
        "ride-hailing:网约车:ride-hailing car; coach:长途客车:long-distance coach;"
        "rural-road:农村公路:rural road; road-bridge:公路桥梁:highway bridge;"
        "driving-school:驾校:driving school; coach-station:客运站:coach station;"
        "shared-bike:共享单车:shared bike"),
      ("service", "overcharge", "broken", "hazard", "unlicensed", "occupation", "consult")),
    D("environment", "environment", _objects(
        "factory:工厂:factory; river:河道:river; livestock-farm:养殖场:livestock farm;"
        "petrol-station:加油站:petrol station; incinerator:垃圾焚烧厂:incinerator;"
        "car-repair:汽修厂:car repair shop; car-wash:洗车店:car wash;"
        "construction-site:工地:construction site; printing-works:印刷厂:printing works;"
        "asphalt-plant:沥青搅拌站:asphalt plant"),
      ("pollution", "noise", "unlicensed", "hazard", "dirty")),
    D("market-supervision", "market-supervision", _objects(
        "supermarket:超市:supermarket; farmers-market:农贸市场:farmers' market; pharmacy:药店:pharmacy;"
        "restaurant:餐馆:restaurant; online-shop:网店:online shop; salon:美容美发店:beauty salon;"
        "gym:健身房:gym; training-school:培训机构:training school; e-bike:电动车:e-bike;"
        "gas-stove:燃气灶:gas stove; packaged-food:预包装食品:packaged food;"
        "decorator:装修公司:renovation company; used-cars:二手车行:used-car dealer;"
        "prepaid-card:预付卡:prepaid card"),
      ("quality", "overcharge", "fraud", "unlicensed", "service", "dirty")),
    D("education", "education", _objects(
        "kindergarten:幼儿园:kindergarten; primary-school:小学:primary school;"
        "middle-school:初中:middle school; tutoring:校外培训:after-school tutoring;"
        "school-bus:校车:school bus; canteen:学校食堂:school canteen; enrolment:入学:school enrolment;"
        "catchment:学区划分:school catchment; student-grant:助学金:student grant"),
      ("overcharge", "hazard", "service", "consult", "dirty", "subsidy", "delay")),
    D("health", "health", _objects(
        "hospital:医院:hospital; health-centre:社区卫生服务中心:community health centre; clinic:诊所:clinic;"
        "vaccination:疫苗接种:vaccination; ambulance:120急救:ambulance service;"
        "blood-donation:献血:blood donation; cosmetic-clinic:医美机构:cosmetic clinic;"
        "nursing-room:母婴室:nursing room; birth-certificate:出生医学证明:birth certificate"),
      ("service", "overcharge", "unlicensed", "consult", "delay", "dirty", "hazard")),
    D("social-security", "social-security", _objects(
        "company:企业:company; building-site:建筑工地:building site;"
        "labour-agency:劳务派遣公司:labour agency; ss-card:社保卡:social security card;"
        "pension:养老保险:pension insurance; unemployment:失业保险:unemployment insurance;"
        "work-injury:工伤认定:work-injury certification;"
        "vocational-training:职业技能培训:vocational training; labour-contract:劳动合同:labour contract;"
        "talent:人才引进:talent programme"),
      ("wages", "consult", "delay", "subsidy", "service", "fraud")),
    D("public-security", "public-security", _objects(
        "hukou:户口:household registration; id-card:身份证:ID card; residence-permit:居住证:residence permit;"
        "exit-entry:出入境证件:exit-entry document; e-bike-plate:电动车上牌:e-bike plate;"
        "vehicle:机动车:motor vehicle; traffic-light:交通信号灯:traffic lights; car-park:停车场:car park;"
        "internet-cafe:网吧:internet cafe; karaoke:KTV:karaoke bar; pet-dog:宠物犬:pet dog;"
        "stray-dog:流浪犬:stray dog"),
      ("delay", "consult", "service", "noise", "occupation", "hazard", "broken")),
    D("civil-affairs", "civil-affairs", _objects(
        "dibao:低保:minimum living allowance; extreme-poverty:特困供养:support for the extremely poor;"
        "nursing-home:养老院:nursing home; seniors-canteen:老年食堂:seniors' canteen;"
        "funeral:殡葬服务:funeral services; cemetery:公墓:cemetery; marriage:婚姻登记:marriage registration;"
        "disability:残疾人补贴:disability allowance; old-age:高龄津贴:old-age allowance;"
        "social-org:社会组织:social organisation; place-sign:地名标志:place-name sign"),
      ("subsidy", "consult", "delay", "service", "overcharge", "hazard")),
    D("natural-resources", "natural-resources", _objects(
        "property-registration:不动产登记:property registration;"
        "property-certificate:房产证:property certificate; land:土地:land; woodland:林地:woodland;"
        "forest:山林:mountain forest; surveying:测绘:surveying; planning-permit:规划许可:planning permit;"
        "mine:矿山:mine; sea-area:海域:sea area"),
      ("delay", "consult", "illegal-build", "hazard", "service", "fraud")),
    D("agriculture", "agriculture", _objects(
        "pesticide:农药:pesticide; fertiliser:化肥:fertiliser; seeds:种子:seeds;"
        "farm-machinery:农机:farm machinery; farmland:耕地:farmland; apple-orchard:苹果园:apple orchard;"
        "cherry-orchard:樱桃园:cherry orchard; livestock:畜禽养殖:livestock;"
        "dead-livestock:病死畜禽:dead livestock; homestead:农村宅基地:rural homestead;"
        "collective-assets:村集体资产:village collective assets"),
      ("quality", "fraud", "subsidy", "consult", "pollution", "illegal-build", "delay")),
    D("emergency", "emergency", _objects(
        "chemicals:危险化学品:hazardous chemicals; fireworks:烟花爆竹:fireworks;"
        "workshop:工厂车间:factory workshop; mine-shaft:矿井:mine shaft;"
        "landslide-site:地质灾害点:geological hazard site; flood-control:防汛设施:flood-control facility;"
        "shelter:避难场所:emergency shelter"),
      ("hazard", "unlicensed", "consult", "broken", "missing")),
    D("culture-tourism", "culture-tourism", _objects(
        "scenic-spot:景区:scenic spot; travel-agency:旅行社:travel agency; tour-guide:导游:tour guide;"
        "hotel:酒店:hotel; homestay:民宿:homestay; library:图书馆:library;"
        "cultural-centre:文化馆:cultural centre; venue:演出场所:performance venue;"
        "arcade:游戏厅:amusement arcade; relic:文物:cultural relic"),
      ("service", "overcharge", "fraud", "unlicensed", "noise", "hazard", "dirty", "broken")),
    D("commerce", "commerce", _objects(
        "mall:商场:shopping mall; recycling:再生资源回收站:recycling station;"
        "scrap-cars:报废汽车回收企业:end-of-life vehicle recycler; promotion:促销活动:sales promotion;"
        "voucher:消费券:consumption voucher; trade-in:家电以旧换新:appliance trade-in;"
        "convenience-store:便利店:convenience store"),
      ("fraud", "service", "overcharge", "subsidy", "consult", "unlicensed", "dirty")),
    D("medical-security", "medical-security", _objects(
        "insurance-card:医保卡:medical insurance card;"
        "reimbursement:医保报销:medical insurance reimbursement; out-of-town:异地就医:out-of-town treatment;"
        "drug-price:药品价格:drug prices; designated-pharmacy:定点药店:designated pharmacy;"
        "outpatient:门诊统筹:outpatient pooling; long-term-care:长期护理保险:long-term care insurance"),
      ("consult", "delay", "overcharge", "fraud", "service", "subsidy")),
    D("veterans", "veterans", _objects(
        "benefits:优抚金:veterans' benefits; resettlement:退役安置:veterans' resettlement;"
        "martyrs-cemetery:烈士陵园:martyrs' cemetery; honour-plaque:光荣牌:honour plaque;"
        "retirement-home:军休所:veterans' retirement home"),
      ("subsidy", "consult", "delay", "service", "broken")),
    D("ocean-fishery", "ocean-fishery", _objects(
        "fishing-boat:渔船:fishing boat; sea-farming:海水养殖:sea farming;"
        "seafood-market:海鲜市场:seafood market; beach:海水浴场:bathing beach;"
        "fishing-port:渔港:fishing port; coastline:海岸线:coastline"),
      ("pollution", "hazard", "unlicensed", "fraud", "dirty", "subsidy")),
    D("approval", "approval", _objects(
        "business-licence:营业执照:business licence; building-permit:施工许可:construction permit;"
        "food-licence:食品经营许可:food business licence; service-hall:政务服务大厅:government service hall;"
        "online-portal:一网通办:online service portal; transport-permit:道路运输许可:road transport permit"),
      ("delay", "service", "consult", "overcharge")),
    D("taxation", "taxation", _objects(
        "income-tax:个人所得税:personal income tax; invoice:发票:invoice;"
        "contributions:社保费:social insurance contributions; deed-tax:房产交易税:property transaction tax;"
        "vehicle-tax:车船税:vehicle tax; e-tax:电子税务局:e-tax bureau"),
      ("consult", "delay", "service", "fraud", "overcharge")),
    D("fire", "fire", _objects(
        "extinguisher:灭火器:fire extinguisher; e-bike-charging:电动车违规充电:illegal e-bike charging;"
        "fire-equipment:消防设施:fire-fighting equipment; crowded-rental:群租房:crowded rental flat;"
        "high-rise:高层建筑:high-rise building"),
      ("hazard", "broken", "missing", "consult")),
    D("water-resources", "water-resources", _objects(
        "reservoir:水库:reservoir; embankment:河道堤防:river embankment;"
        "rural-water:农村饮水工程:rural drinking-water scheme; sand-mining:河道采砂:river sand mining;"
        "pond-dam:塘坝:pond dam; irrigation:灌溉渠:irrigation canal"),
      ("hazard", "broken", "pollution", "unlicensed", "outage")),
    D("justice", "justice", _objects(
        "legal-aid:法律援助:legal aid; notary:公证:notarisation; mediation:人民调解:people's mediation;"
        "law-firm:律师事务所:law firm; corrections:社区矫正:community corrections"),
      ("consult", "service", "delay", "overcharge")),
    D("housing-fund", "housing-fund", _objects(
        "withdrawal:公积金提取:housing fund withdrawal; loan:公积金贷款:housing fund loan;"
        "contributions:公积金缴存:housing fund contributions"),
      ("consult", "delay", "service")),
    D("communications", "communications", _objects(
        "mobile-signal:手机信号:mobile signal; broadband:宽带:broadband; base-station:通信基站:base station;"
        "nuisance-calls:骚扰电话:nuisance calls; cable-tv:有线电视:cable TV"),
      ("outage", "overcharge", "service", "hazard", "fraud")),
    D("grid-affairs", "area:grid", _objects(
        "thrown-objects:高空抛物:objects thrown from windows; private-cables:私拉电线:private power cables;"
        "stairwell-clutter:楼道杂物:clutter in the stairwell;"
        "vegetable-plots:毁绿种菜:vegetables planted on greenery;"
        "poultry:饲养家禽:poultry kept in the compound;"
        "flying-leads:飞线充电:charging cables hung from windows; old-furniture:废弃家具:abandoned furniture;"
        "wall-ads:墙体广告:adverts painted on walls"),
      ("hazard", "dirty", "occupation")),
    D("community-affairs", "area:community", _objects(
        "activity-room:社区活动室:community activity room;"
        "elderly-station:社区养老驿站:community elderly care station;"
        "community-canteen:社区食堂:community canteen; home-care:居家养老服务:home care for the elderly;"
        "certificates:社区证明:certificates from the community;"
        "residents-council:居民议事:residents' council; volunteers:志愿服务:volunteer service"),
      ("service", "consult", "delay", "broken")),
    D("village-affairs", "area:street", _objects(
        "village-road:村内道路:village road; village-environment:村庄环境:village environment;"
        "rural-toilet:农村改厕:rural toilet renovation; village-lights:乡村路灯:village street lights;"
        "village-affairs:村务公开:village affairs transparency; land-contract:土地承包:land contract"),
      ("broken", "dirty", "consult", "delay", "fraud")),
)


def bureau_districts(bureau: Bureau, district_ids: list[str]) -> list[str]:
    """The districts where ``bureau`` has a branch."""
    if bureau.branches == "all":
        return [d for d in district_ids if d != "changdao"]
    if bureau.branches == "core":
        return [d for d in district_ids if d not in ZONES]
    return []


def branch_unit(bureau: Bureau, district_id: str, district_name: str, district_en: str) -> dict[str, Any]:
    """The unit of ``bureau``'s branch in one district: housing-zhifu, 芝罘区住房和城乡建设局."""
    short = district_name.removeprefix("烟台").removesuffix("综合试验区")
    if bureau.fenju:
        name = f"{bureau.name}{short.removesuffix('区').removesuffix('市').removesuffix('技术产业开发区')}分局"
    else:
        name = f"{short}{bureau.name.removeprefix('市')}"
    return {"id": f"{bureau.id}-{district_id}", "name": name, "name_en": f"{district_en} {bureau.name_en}",
            "level": "district", "kind": "department", "branch_of": bureau.id, "branch_area": district_id}


def generated_matters(rng: random.Random, taken_codes: set[str], taken_names: set[str], count: int) -> list[dict[str, Any]]:
    """``count`` matters drawn from every domain's objects x problems, in domain order; codes and names unique."""
    branched = {b.id for b in BUREAUS if b.branches != "none"}
    combos = [(d, o, PROBLEMS[p]) for d in DOMAINS for o in d.objects for p in d.problems]
    chosen = rng.sample(range(len(combos)), k=len(combos))
    matters: list[tuple[int, dict[str, Any]]] = []
    for index in chosen:
        domain, obj, problem = combos[index]
        matter = _matter(domain, obj, problem, branched)
        if matter["code"] in taken_codes or matter["name"] in taken_names:
            continue
        taken_codes.add(matter["code"])
        taken_names.add(matter["name"])
        matters.append((index, matter))
        if len(matters) == count:
            break
    if len(matters) < count:
        raise ValueError(f"the domain tables make only {len(matters)} distinct matters, {count} wanted")
    return [m for _, m in sorted(matters, key=lambda pair: pair[0])]


def _matter(domain: Domain, obj: tuple[str, str, str], problem: Problem, branched: set[str]) -> dict[str, Any]:
    slug, zh, en = obj
    matter: dict[str, Any] = {
        "code": f"{domain.code}.{slug}-{problem.slug}",
        "name": problem.name.format(o=zh),
        "name_en": _sentence(problem.name_en.format(o=en)),
    }
    matter.update(_lead(domain, problem, branched))
    sign_for, response, resolution = problem.limits
    matter["needs_consultation"] = problem.consult
    matter["limits"] = {"sign_for": sign_for, "response": response, "resolution": resolution}
    matter["keywords_zh"] = [k.format(o=zh) for k in problem.keywords_zh]
    matter["keywords_en"] = [k.format(o=en) for k in problem.keywords_en]
    return matter


def _lead(domain: Domain, problem: Problem, branched: set[str]) -> dict[str, Any]:
    """Who leads and assists, and at which level, for one domain's kind of problem."""
    co = problem.co if problem.co not in (None, domain.lead) else None
    helpers: dict[str, Any] = {}
    if co is not None:
        helpers = {"co_branches_of": [co]} if co in branched else {"co_units": [co]}
    if domain.lead.startswith("area:"):
        level = domain.lead.removeprefix("area:")
        return {"lead_by_area": level, **helpers, "level": level}
    if domain.lead in branched and not problem.city_level:
        return {"lead_branch_of": domain.lead, **helpers, "level": "district"}
    return {"lead": domain.lead, **({"co_units": [co]} if co else {}), "level": "city"}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
