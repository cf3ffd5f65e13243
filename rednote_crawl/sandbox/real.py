"""The shape of real answers, as the sandbox copies it.

Source: the vendor's published answers of this endpoint, justoneapi-team/justoneapi-python,
``docs/api-examples/getApiXiaohongshuSearchNoteV2.json`` at revisions 008e887e, d199bbc7 and c964c310
(copies in tests/data/real/; docs/sandbox.md lists what is copied and what is guessed). The keys,
their nesting and the values that never vary in those samples are copied here; the builders take the
values that vary (ids, texts, counts, URLs' signatures) from the caller's random generator, so that
every note keeps the real shape and the corpus stays deterministic.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson

from rednote_crawl import api

# ``advanced_widgets_groups`` is the same on every image note, and on every video note, of the samples.
AWG_IMAGE: dict[str, Any] = {
    "groups": [
        {
            "fetch_types": [
                "guos_test", "note_next_step", "second_jump_bar", "cooperate_binds", "note_collection",
                "rec_next_infos", "image_stickers", "image_filters", "product_review", "related_search",
                "cooperate_comment_component", "image_goods_cards", "ads_goods_cards", "ads_comment_component",
                "goods_card_v2", "image_template", "buyable_goods_card_v2", "ads_engage_bar", "challenge_card",
                "cooperate_engage_bar", "guide_post", "pgy_comment_component", "pgy_engage_bar", "bar_below_image",
                "aigc_collection", "co_produce", "widgets_ndb", "next_note_guide", "pgy_bbc_exp", "async_group",
                "super_activity", "widgets_enhance", "music_player", "soundtrack_player",
            ],
            "mode": 1,
        },
        {
            "fetch_types": [
                "guos_test", "vote_stickers", "bullet_comment_lead", "note_search_box", "interact_pk",
                "interact_vote", "guide_heuristic", "share_to_msg", "follow_guide", "note_share_prompt_v1",
                "sync_group", "group_share", "share_guide_bubble", "widgets_share", "guide_navigator",
            ],
            "mode": 0,
        },
    ]
}  # fmt: skip
AWG_VIDEO: dict[str, Any] = {
    "groups": [
        {
            "fetch_types": [
                "guos_test", "note_next_step", "second_jump_bar", "note_collection", "cooperate_binds",
                "rec_next_infos", "video_marks", "product_review", "related_search", "video_goods_cards",
                "cooperate_comment_component", "ads_goods_cards", "ads_comment_component", "goods_card_v2",
                "video_recommend_tag", "buyable_goods_card_v2", "cooperate_search_component", "ads_engage_bar",
                "challenge_card", "cooperate_engage_bar", "pgy_comment_component", "pgy_engage_bar",
                "related_recommend", "next_note_guide", "widgets_ndb", "pgy_bbc_exp", "brand_max_trailer",
                "super_activity", "note_nice_guide", "pin_search_highlights", "widgets_enhance", "packed_goods",
                "packed_buyable_goods", "widgets_ncb", "note_nice_compound", "live_shooting_flag", "widgets_nbb",
                "poi_declare", "async_group",
            ],
            "mode": 1,
        },
        {
            "fetch_types": [
                "guos_test", "vote_stickers", "bullet_comment_lead", "note_search_box", "interact_pk",
                "interact_vote", "guide_heuristic", "guide_post", "video_foot_bar", "follow_guide", "share_to_msg",
                "note_share_prompt_v1", "note_share_prompt_v2", "group_share", "share_guide_bubble",
                "goods_enhance_component", "guide_navigator", "sync_group",
            ],
            "mode": 0,
        },
    ]
}  # fmt: skip
PUBLISH_TIME_ICON = "http://picasso-static.xiaohongshu.com/fe-platform/e9b67af62f67d9d6cfac936f96ad10a85fdb868e.png"
IMAGE_HOSTS = ("sns-na-i1", "sns-na-i4", "sns-na-i6")
FILEID_PREFIXES = ("", "", "", "notes_pre_post/", "spectrum/", "notes_uhdr/", "note_pre_post_uhdr/")
# Official accounts the samples' notes @-mention.
MENTIONABLE = ("吃货薯", "热点薯", "HOWTO薯")


def base32(r: random.Random, n: int) -> str:
    """``n`` random characters of 0-9a-v, the alphabet of the samples' file ids ("1040g0083243g32re7k7...")."""
    return base64.b32hexencode(r.randbytes(n * 5 // 8 + 1)).decode().lower()[:n]


def _base64(r: random.Random, n: int) -> str:
    return base64.b64encode(r.randbytes(n * 3 // 4 + 1)).decode()[:n]


def _hex(r: random.Random, digits: int) -> str:
    return f"{r.getrandbits(4 * digits):0{digits}x}"


def compact(value: Any) -> str:
    """A JSON string field (``widgets_context``, ``service_status``, ...): compact, as the API sends it."""
    return orjson.dumps(value).decode()


def preview(text: str, units: int) -> str:
    """``text`` cut to at most ``units`` UTF-16 code units, never inside a surrogate pair."""
    if api.utf16_len(text) <= units:
        return text
    used = 0
    for end, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > units:
            return text[:end]
    return text


def note_id(timestamp: int, r: random.Random) -> str:
    """24 hex digits: the creation time in hex, eight zeros, eight random ones ("6a86f912000000002202dd15")."""
    return f"{timestamp:08x}00000000{_hex(r, 8)}"


def xsec_token(r: random.Random) -> str:
    """The note's access token: "YB", 43 URL-safe base64 characters, "=" ("YB0jTAnhzaav12W-...lgsbw=")."""
    return "YB" + base64.urlsafe_b64encode(r.randbytes(32)).decode().rstrip("=") + "="


def corner_tags(r: random.Random, text: str, text_en: str, *, poi: bool) -> list[dict[str, Any]]:
    """``corner_tag_info``: a signature, the publish time as the app shows it, sometimes a place."""
    tags: list[dict[str, Any]] = [
        {"icon": "", "location": -1, "style": 0, "text": "RA" + _base64(r, 98), "text_en": "",
         "type": "ubt_sig_token"},
        {"icon": PUBLISH_TIME_ICON, "location": 5, "style": 0, "text": text, "text_en": text_en,
         "type": "publish_time"},
    ]  # fmt: skip
    if poi:
        tags.append({"location": 0, "poi_id": _hex(r, 20).upper(), "style": 0})
    return tags


def user(r: random.Random, user_id: str, nickname: str, *, followed: bool) -> dict[str, Any]:
    """``user``; the newer answers add ``followed``, with ``shared_count`` and the others (corpus.py)."""
    info: dict[str, Any] = {"followed": False} if followed else {}
    info.update(
        images=f"https://sns-avatar-qc.xhscdn.com/avatar/1040g2jo{base32(r, 32)}?imageView2/2/w/80/format/jpg",
        nickname=nickname,
        red_id=str(r.randint(10**8, 10**11)),
        red_official_verified=False,
        red_official_verify_type=0,
        show_red_official_verify_icon=False,
        track_duration=0,
        userid=user_id,
    )
    return info


def images(r: random.Random, count: int, host: str, expires: str) -> list[dict[str, Any]]:
    """``images_list``: only the first image has ``url`` (a 576 px preview); every image has
    ``url_size_large`` (1440 px); the others send ``url: ""``."""
    out = []
    for n in range(count):
        fileid = r.choice(FILEID_PREFIXES) + "1040g" + base32(r, 35)
        sign = _hex(r, 32)
        base = f"https://{host}.xhscdn.com/{fileid}?imageView2/2/w/"
        preview_url = (
            f"{base}576/format/webp/q/87%7CimageMogr2/strip&redImage/frame/0&ap=5&sc=SRH_PRV&sign={sign}&t={expires}"
        )
        width = r.choice((1080, 1088, 1440, 1920, 3024))
        out.append(
            {
                "fileid": fileid,
                "height": width * r.choice((4, 4, 3)) // 3,
                "need_load_original_image": False,
                "original": "",
                "trace_id": fileid,
                "url": preview_url if n == 0 else "",
                "url_size_large": f"{base}1440/format/webp&ap=5&sc=SRH_DTL&sign={sign}&t={expires}",
                "width": width,
            }
        )
    return out


def widgets_context(
    author_id: str, author_name: str, *, video: dict[str, Any] | None, flags: dict[str, bool], brand: bool
) -> str:
    """``widgets_context``, a JSON string. ``video`` holds ``origin_video_key`` and ``video_duration``.
    A note a brand paid for carries ``order_cooperate`` and ``commercial_bridge_note``, both true."""
    context: dict[str, Any] = {}
    if video is not None:
        context.update(video=True, origin_video_key=video["origin_video_key"])
    context.update(flags=flags, author_id=author_id, author_name=author_name)
    if brand:
        context.update(order_cooperate=True, commercial_bridge_note=True)
    if video is not None:
        context["video_duration"] = video["video_duration"]
    return compact(context)


def _stream(r: random.Random, codec: str, duration_ms: int, key: str, expires: str, *, token: bool) -> dict[str, Any]:
    """One entry of ``video_info_v2.media.stream.h264`` / ``h265``."""
    h265 = codec == "hevc"
    stream_type = r.choice((129, 178, 324, 293)) if h265 else 258
    path = f"stream/{r.choice((1, 79))}/110/{stream_type}/{key}_{stream_type}.mp4"
    video_bitrate = r.randint(500_000, 1_900_000) if h265 else r.randint(2_000_000, 6_100_000)
    audio_bitrate = r.choice((64_000, 110_822, 128_000)) if h265 else r.randint(56_000, 56_400)
    opaque: dict[str, Any] = {"didLoudnorm": "false", "pcdn_302_flag": "false", "pcdn_supplier": "wangxin"}
    if h265:
        mvmaf = f"{r.uniform(73, 87):.4f}"
        opaque.update(
            roi_info=compact({"alpha": "1.0", "gamma": "0.0", "lambda": "1.5E-6", "mvmaf": mvmaf}),
            roiWeight=f"{float(mvmaf) - r.uniform(0.5, 3):.4f}",
        )
    opaque["use_pcdn"] = "1" if h265 else "0"
    entry: dict[str, Any] = {
        "audio_bitrate": audio_bitrate,
        "audio_channels": 2,
        "audio_codec": "aac",
        "audio_duration": duration_ms - r.randint(0, 60),
        "avg_bitrate": video_bitrate + audio_bitrate,
        "backup_urls": [f"http://sns-bak-v{r.choice((1, 6))}.xhscdn.com/{path}"],
        "default_stream": 1 if h265 else 0,
        "duration": duration_ms,
        "format": "mp4",
        "fps": r.choice((30, 30, 60)) if h265 else 30,
        "hdr_type": 0,
        "height": 1280,
        "master_url": f"http://sns-video-qc.xhscdn.com/{path}?sign={_hex(r, 32)}&t={expires}",
        "opaque1": opaque,
        "psnr": round(r.uniform(34, 40), 3) if h265 else 0,
        "quality_type": "HD",
        "rotate": 0,
        "size": (video_bitrate + audio_bitrate) * duration_ms // 8000,
        "sr": 0,
        "ssim": 0,
        "stream_desc": f"R265_MP4_720P_{stream_type}_IOS" if h265 else "X264_MP4",
        "stream_type": stream_type,
    }
    if token:
        entry["token"] = ""
    entry.update(
        video_bitrate=video_bitrate,
        video_codec=codec,
        video_duration=duration_ms - 1,
        vmaf=-1,
        volume=0,
        weight=50 if h265 else 49,
        width=720,
    )
    return entry


def video_info(r: random.Random, duration: int, host: str, expires: str) -> dict[str, Any]:
    """``video_info_v2``: ``capa`` (the duration in seconds), ``consumer``, ``image`` (frames),
    ``media`` (the streams and the source video). Some samples' notes have no ``first_frame``, some
    streams a ``token: ""``, some videos subtitles; the builder does the same, now and then."""
    key = f"01e{_hex(r, 31)}"
    duration_ms = duration * 1000 + r.randint(0, 999)
    frame = f"https://{host}.xhscdn.com/frame/110/0/{key}_0.webp?imageView2/2/w/"
    thumb_sign = _hex(r, 32)
    image: dict[str, Any] = {}
    if r.random() < 0.8:
        image["first_frame"] = (
            f"https://{host}.xhscdn.com/110/0/{key}_0.jpg?imageView2/2/w/1440/format/webp&ap=5&sc=SRH_DTL"
            f"&sign={_hex(r, 32)}&t={expires}"
        )
    image["thumbnail"] = f"{frame}5000/h/5000/format/webp/q/90&ap=5&sc=SRH_ORG&sign={thumb_sign}&t={expires}"
    image["thumbnail_dim"] = f"{frame}720/h/720/format/webp&ap=5&sc=SRH_SPRT&sign={thumb_sign}&t={expires}"
    token = r.random() < 0.2
    h264 = _stream(r, "h264", duration_ms, key, expires, token=token)
    h265 = _stream(r, "hevc", duration_ms, key, expires, token=token)
    subtitles = r.random() < 0.5
    opaque: dict[str, Any] = {
        "amend": "18",
        "amend_2k": "26",
        "amend_4k": "1",
        "amend_mobile": "40",
        "audioClsInfo": compact({"music_ratio": r.random(), "freesound_ratio": r.random(), "speech_ratio": r.random()}),
        "audioLevInfo": compact({"audio_quality_level": r.choice(("E", "F", "G+")), "mos_overall": 3.0,
                                 "version": "3.0"}),
        "bottomAvgLuma": str(r.randint(90, 170)),
        "default_screencast_stream": h264["master_url"],
        "domestic": "1",
        "hasHumanVoice": "true" if subtitles else "false",
        "hd_screencast_stream": h264["master_url"].replace("/258/", "/301/").replace("_258.", "_301."),
    }  # fmt: skip
    if r.random() < 0.4:
        opaque["hd_screencast_stream_basic"] = h264["master_url"].replace("/258/", "/261/").replace("_258.", "_261.")
    if subtitles:
        opaque["insertSubtitleLanguages"] = '["zh-CN"]'
    opaque.update(
        isSupportSubtitle="true" if subtitles else "false",
        loudnorm=compact({"lra": 2.3, "htp": -0.5, "hldn": -13.4, "ldn": -13.0, "thr": -23.5}),
        rightAvgLuma=str(r.randint(80, 170)),
        topAvgLuma=str(r.randint(80, 170)),
    )
    if subtitles:
        opaque["videoLanguage"] = '["zh-CN"]'
    opaque["weakNetUserFlag"] = "1"
    uhd = r.random() < 0.4
    return {
        "capa": {"duration": duration, "frame_ts": 0, "is_upload": False, "is_user_select": False},
        "consumer": {"can_super_resolution": False},
        "image": image,
        "media": {
            "stream": {"av1": [], "h264": [h264], "h265": [h265], "h266": []},
            "user_level": 0,
            "video": {
                "biz_id": str(r.randint(281 * 10**15, 283 * 10**15)),
                "biz_name": 110,
                "bound": [{"h": 0, "w": 0, "x": 0, "y": 0}],
                "drm_type": 0,
                "duration": duration + 1,
                "hdr_type": int(uhd and r.random() < 0.5),
                "height": 3840 if uhd else 1920,
                "md5": _hex(r, 32),
                "opaque1": opaque,
                "stream_types": [258, h265["stream_type"]],
                "width": 2160 if uhd else 1080,
            },
            "video_id": r.randint(137 * 10**15, 139 * 10**15),
        },
    }


def ads_item(note: dict[str, Any], r: random.Random, advertiser: int) -> dict[str, Any]:
    """A sponsored note, as the one ``ads`` item of the samples wraps it (revision d199bbc7): its note
    has no ``extract_text_enabled`` or ``geo_info``, a ``recommend``, and a bare publish-time corner tag."""
    track_id = f"adscpcn_{_hex(r, 8)}-{_hex(r, 4)}-{_hex(r, 4)}-{_hex(r, 4)}-{_hex(r, 12)}@{_hex(r, 32)}"
    ads_id = str(r.randint(10**9, 10**10))
    sponsored = {k: v for k, v in note.items() if k not in ("extract_text_enabled", "geo_info")}
    publish = next(tag for tag in note["corner_tag_info"] if tag.get("type") == "publish_time")
    sponsored["corner_tag_info"] = [
        {"location": 5, "text": publish["text"], "text_en": publish["text_en"], "type": "publish_time"}
    ]
    sponsored["recommend"] = {"chapter_time": 0, "track_id": track_id}
    extra = {
        "ads_engagebar_info": {"ignore_component": False, "ignore_goods_component": False,
                               "live_trailer_engagebar_enable": False, "rta_id": 0},
        "ads_id": int(ads_id), "advertiser_id": advertiser, "advertiser_id64": advertiser,
        "caid": f"20250325_{_hex(r, 32)},20260506_{_hex(r, 32)}", "expo_flag": False, "expo_flag_for_click": False,
        "is_preview_flag": False, "keyword_id": str(r.randint(10**10, 10**11)), "note_id": note["id"],
        "origin_track_id": track_id, "placement": "SEARCH", "second_jump_style": "NONE", "second_jump_type": 0,
    }  # fmt: skip
    ads = {
        "ad_tag": "广告", "ads_id": ads_id, "extra_json": compact(extra), "is_tracking": True, "model_type": "note",
        "not_ads_constrained": False, "note": sponsored, "second_jump_style": "NONE", "second_jump_type": 0,
        "show_tag": True, "track_id": track_id, "track_url": base64.b64encode(r.randbytes(600)).decode(),
        "widgets_fallback": {},
    }  # fmt: skip
    return {"ads": ads, "model_type": "ads"}


def page_data(items: list[dict[str, Any]], r: random.Random) -> dict[str, Any]:
    """``data`` of a page: the keys every sample page has (the user's sample adds ``dqa_instant_sid``
    when ``request_dqa_instant`` is true), with ``items``. An empty page has the same keys (a guess)."""
    can_cut = r.random() < 0.5
    instant = r.random() < 0.2
    data: dict[str, Any] = {
        "ai_mode_enable": False,
        "can_cut": can_cut,
        "cur_cut_number": int(can_cut),
        "dqa_authorized_user_by_shared": False,
    }
    if instant:
        data["dqa_instant_sid"] = base64.b64encode(r.randbytes(8)).decode()[:10]
    data.update(
        extra_info={"atmosphere_v3_enable": "0"},
        is_broad_query=True,
        items=items,
        query_debug_info={"is_forbidden": False},
        query_intent={"goodsIntent": 3, "low_supply_intent": False, "search_ask_intent": True},
        query_type=0,
        request_dqa=0,
        request_dqa_instant=instant,
        search_dqa_new_page_exp=1,
        search_pull_down_opt_exp=1,
        search_request_id=_hex(r, 16),
        service_status=compact(
            {
                "filter": "not_required",
                "note": "success",
                "onebox": "not_required",
                "cost": {"all": r.randint(500, 750), "zone": r.choice(("rcsh1", "rcsh1", "alsh1-gray"))},
            }
        ),
        show_single_col=False,
        strategy_info={"query_average_impression_count": 19, "query_can_guide_to_feed": True},
    )
    return data


# --- note detail (get-note-detail/v1) ----------------------------------------------------------
# The shape of the vendor's real published answer (tests/data/real/SOURCES.md, "Note detail"): the
# envelope's ``data`` is a list of one wrapper, ``{comment_list, model_type, note_list: [note],
# track_id, user}``; the note has the whole ``desc`` (topics inline as ``#name[话题]#``), ``hash_tag``
# (every topic, ``type: "topic"``), ``ip_location``, ``images_list`` with ``original`` (sc=V_ORG,
# ``imageView2/2/w/5000/h/5000``), ``url`` (a 576 px preview), ``width`` and ``height``, ``ats``,
# ``shared_count``, ``time`` (publish, epoch seconds) and ``last_update_time``; ``user`` has
# ``id``, ``userid``, ``name``, ``nickname``, ``red_id``, ``image``.
IP_LOCATIONS = ("中国香港", "湖北", "广东", "上海", "北京", "浙江", "四川", "江苏", "美国", "日本")


def topic_tag(r: random.Random, name: str) -> dict[str, Any]:
    topic_id = _hex(r, 24)
    return {
        "bizId": "",
        "current_score": 0,
        "id": topic_id,
        "link": f"xhsdiscover://rn/sns-discover/topic/normal?id={_hex(r, 24)}&page_source=note_feed.click_new_big",
        "name": name,
        "record_count": 0,
        "record_emoji": "",
        "record_unit": "",
        "tag_hint": "",
        "type": "topic",
    }


def detail_images(r: random.Random, search_images: list[dict[str, Any]], expires: str) -> list[dict[str, Any]]:
    """``images_list`` of a detail answer: each image with ``original``, ``url`` and its size."""
    out = []
    for n, image in enumerate(search_images):
        fileid = image.get("fileid") or base32(r, 40)
        sign = _hex(r, 32)
        base = f"http://sns-img-bd.xhscdn.com/{fileid}?imageView2/2/w/"
        out.append(
            {
                "fileid": fileid,
                "height": image.get("height", 1440),
                "index": n,
                "latitude": 0,
                "longitude": 0,
                "need_load_original_image": True,
                "original": f"{base}5000/h/5000/format/webp/q/90&ap=1&sc=V_ORG&sign={sign}&t={expires}",
                "scale_to_large": 4,
                "trace_id": fileid,
                "url": f"{base}576/format/webp/q/87%7CimageMogr2/strip&redImage/frame/0&ap=1&sc=V_PRV&sign={sign}&t={expires}",
                "width": image.get("width", 1080),
            }
        )
    return out


def detail_data(note: dict[str, Any], user_info: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``data`` of a detail answer around its note."""
    return [{"comment_list": [], "model_type": "note", "note_list": [note], "track_id": "", "user": user_info}]
