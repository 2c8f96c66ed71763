"""The page in English and Simplified Chinese, chosen from ``Accept-Language`` or the switch.

``pick(accept_language, cookie)`` returns ``en`` or ``zh``; ``Messages(lang)`` translates a
key (``t("upload")``) and formats ``{name}`` fields. Language names for the language menu
come from ``language_name(code, lang)``; Cantonese (``yue``) is named in both.
"""

from __future__ import annotations

UI_LANGUAGES = ("en", "zh")
LANG_COOKIE = "hushdrop_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "hushdrop",
        "tagline": "private transcripts, on this machine",
        "nav_drop": "Drop & queue",
        "nav_search": "Search",
        "search_placeholder": "Search all transcripts",
        "search_button": "Search",
        "logout": "Log out",
        "switch_to": "中文",
        "add_title": "Add recordings",
        "drop_here": "Drop recordings here",
        "or": "or",
        "choose_files": "Choose files",
        "accepted": "Audio and video files: {extensions}. Up to {max_mb} MB each.",
        "profile": "Profile",
        "language": "Language",
        "language_auto": "Automatic",
        "language_profile": "Profile's ({language})",
        "upload_all": "Upload",
        "clear": "Clear",
        "remove": "Remove",
        "duration": "Duration",
        "sample_rate": "Sample rate",
        "channels": "Channels",
        "size": "Size",
        "no_preview": "This browser cannot decode it for a preview; hushdrop will.",
        "too_big_preview": "Too large to preview in the browser.",
        "decoding": "Reading…",
        "uploading": "Uploading… {percent}%",
        "uploaded": "Uploaded into the inbox: follow it in the queue",
        "upload_failed": "Upload failed: {reason}",
        "record_title": "Record",
        "record": "Record",
        "stop": "Stop",
        "play": "Play",
        "pause": "Pause",
        "send": "Send",
        "discard": "Discard",
        "recording": "Recording…",
        "take_ready": "Listen to the take, then send it or discard it.",
        "mic_denied": "The microphone could not be opened: {reason}",
        "mic_insecure": "The browser allows the microphone only on a secure page. Open this page on the machine itself (http://127.0.0.1:{port}/), or give hushdrop a certificate (web.tls_cert and web.tls_key in config.yaml) and open it with https://.",
        "mic_unsupported": "This browser cannot record audio (no MediaRecorder).",
        "queue_title": "Queue",
        "queue_empty": "Nothing yet: drop a recording above, or copy one into the inbox.",
        "quarantine_usage": "Quarantine: {files} recording(s), {size}",
        "quarantine_max_size": "the oldest are shredded past {size}",
        "quarantine_max_days": "kept {days} days",
        "col_name": "Recording",
        "col_profile": "Profile",
        "col_state": "State",
        "col_stage": "Stage",
        "col_progress": "Progress",
        "col_time": "Time",
        "elapsed": "{elapsed} elapsed",
        "expected": "about {remaining} left",
        "took": "took {elapsed}",
        "view": "Open",
        "retry": "Retry",
        "delete": "Delete",
        "confirm_delete": "Delete this recording from quarantine? It is shredded and cannot be recovered.",
        "error_details": "Why",
        "next_try": "next try {when}",
        "state_uploaded": "uploaded",
        "state_seen": "arriving",
        "state_claimed": "queued",
        "state_processing": "transcribing",
        "state_committed": "saving",
        "state_done": "done",
        "state_failed": "will retry",
        "state_quarantined": "quarantined",
        "state_abandoned": "gone",
        "state_retried": "sent again",
        "state_deleted": "deleted",
        "result_title": "Transcript",
        "facts": "Audio",
        "decoded": "Decoded",
        "format": "Format",
        "detected_language": "Language",
        "probability": "{percent}% sure",
        "engine": "Engine",
        "processed": "Processed",
        "received": "Received",
        "finished": "Finished",
        "downloads": "Download",
        "copy_all": "Copy all",
        "copied": "Copied",
        "edit": "Edit",
        "save": "Save",
        "cancel": "Cancel",
        "saving": "Saving…",
        "saved": "Saved: txt, srt, vtt and md were written again",
        "save_conflict": "The transcript changed since this page loaded; reload it and edit again.",
        "edited_note": "Edited {when}; the engine's own words are kept in the JSON.",
        "no_speech": "(no speech detected)",
        "notes": "Notes",
        "original": "Original recording",
        "no_original": "The original was shredded after transcription (profile originals: shred), so it cannot be played here.",
        "not_done": "This recording is not transcribed yet.",
        "job_error": "It failed in stage {stage}.",
        "back_to_queue": "Back to the queue",
        "search_title": "Search",
        "search_none": "No transcript contains “{query}”.",
        "search_hint": "Type a word or a phrase (Chinese: any two characters or more).",
        "search_count": "{count} transcript(s)",
        "login_title": "Log in",
        "password": "Password",
        "login": "Log in",
        "login_wrong": "Wrong password.",
        "login_limited": "Too many wrong passwords. Try again in {minutes} minute(s).",
        "login_cleartext": "This page is not served over HTTPS: the password crosses the network in clear. Set web.tls_cert and web.tls_key, or use it only on a network you trust.",
        "waveform": "Waveform",
        "segments_hint": "Click a stretch of the waveform or a line to jump there.",
        "unit_h": " h ",
        "unit_min": " min ",
        "unit_s": " s",
    },
    "zh": {
        "title": "hushdrop",
        "tagline": "私密转写，只在这台机器上",
        "nav_drop": "上传与队列",
        "nav_search": "搜索",
        "search_placeholder": "搜索全部转写稿",
        "search_button": "搜索",
        "logout": "退出登录",
        "switch_to": "English",
        "add_title": "添加录音",
        "drop_here": "把录音拖到这里",
        "or": "或",
        "choose_files": "选择文件",
        "accepted": "音频和视频文件：{extensions}。每个最大 {max_mb} MB。",
        "profile": "配置",
        "language": "语言",
        "language_auto": "自动识别",
        "language_profile": "配置默认（{language}）",
        "upload_all": "上传",
        "clear": "清空",
        "remove": "移除",
        "duration": "时长",
        "sample_rate": "采样率",
        "channels": "声道",
        "size": "大小",
        "no_preview": "浏览器无法解码预览；hushdrop 可以处理。",
        "too_big_preview": "文件太大，浏览器不预览。",
        "decoding": "读取中…",
        "uploading": "上传中… {percent}%",
        "uploaded": "已上传到收件夹：请在队列中查看进度",
        "upload_failed": "上传失败：{reason}",
        "record_title": "录音",
        "record": "录音",
        "stop": "停止",
        "play": "播放",
        "pause": "暂停",
        "send": "发送",
        "discard": "丢弃",
        "recording": "录音中…",
        "take_ready": "先听一遍，再发送或丢弃。",
        "mic_denied": "无法打开麦克风：{reason}",
        "mic_insecure": "浏览器只在安全页面上允许使用麦克风。请在本机上打开此页面（http://127.0.0.1:{port}/），或为 hushdrop 配置证书（config.yaml 中的 web.tls_cert 和 web.tls_key）并用 https:// 打开。",
        "mic_unsupported": "此浏览器无法录音（没有 MediaRecorder）。",
        "queue_title": "队列",
        "queue_empty": "暂无任务：在上方添加录音，或把录音复制到收件夹。",
        "quarantine_usage": "隔离区：{files} 个录音，{size}",
        "quarantine_max_size": "超过 {size} 时最早的先被粉碎",
        "quarantine_max_days": "保留 {days} 天",
        "col_name": "录音",
        "col_profile": "配置",
        "col_state": "状态",
        "col_stage": "阶段",
        "col_progress": "进度",
        "col_time": "时间",
        "elapsed": "已用 {elapsed}",
        "expected": "约剩 {remaining}",
        "took": "用时 {elapsed}",
        "view": "打开",
        "retry": "重试",
        "delete": "删除",
        "confirm_delete": "从隔离区删除这个录音？它会被粉碎，无法恢复。",
        "error_details": "原因",
        "next_try": "下次重试 {when}",
        "state_uploaded": "已上传",
        "state_seen": "接收中",
        "state_claimed": "排队中",
        "state_processing": "转写中",
        "state_committed": "保存中",
        "state_done": "完成",
        "state_failed": "将重试",
        "state_quarantined": "已隔离",
        "state_abandoned": "已消失",
        "state_retried": "已重新发送",
        "state_deleted": "已删除",
        "result_title": "转写稿",
        "facts": "音频",
        "decoded": "已解码",
        "format": "格式",
        "detected_language": "语言",
        "probability": "置信度 {percent}%",
        "engine": "引擎",
        "processed": "处理用时",
        "received": "接收时间",
        "finished": "完成时间",
        "downloads": "下载",
        "copy_all": "全部复制",
        "copied": "已复制",
        "edit": "编辑",
        "save": "保存",
        "cancel": "取消",
        "saving": "保存中…",
        "saved": "已保存：txt、srt、vtt 和 md 已重新生成",
        "save_conflict": "页面加载后转写稿已被修改；请刷新后再编辑。",
        "edited_note": "已于 {when} 编辑；引擎的原文保存在 JSON 中。",
        "no_speech": "（未检测到语音）",
        "notes": "备注",
        "original": "原始录音",
        "no_original": "原始录音在转写后已被粉碎（配置 originals: shred），无法在此播放。",
        "not_done": "这个录音还没有转写完成。",
        "job_error": "在 {stage} 阶段失败。",
        "back_to_queue": "返回队列",
        "search_title": "搜索",
        "search_none": "没有转写稿包含“{query}”。",
        "search_hint": "输入一个词或短语（中文至少两个字）。",
        "search_count": "{count} 份转写稿",
        "login_title": "登录",
        "password": "密码",
        "login": "登录",
        "login_wrong": "密码错误。",
        "login_limited": "错误次数过多，请 {minutes} 分钟后再试。",
        "login_cleartext": "此页面没有使用 HTTPS：密码将以明文在网络上传输。请设置 web.tls_cert 和 web.tls_key，或只在可信网络中使用。",
        "waveform": "波形",
        "segments_hint": "点击波形上的片段或某一行即可跳转。",
        "unit_h": " 小时 ",
        "unit_min": " 分 ",
        "unit_s": " 秒",
    },
}

# Whisper's languages, in English; Chinese names for the common ones.
LANGUAGE_NAMES_EN = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani", "ba": "Bashkir",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan", "br": "Breton", "bs": "Bosnian",
    "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fil": "Filipino",
    "fo": "Faroese", "fr": "French", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa", "haw": "Hawaiian",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jw": "Javanese", "ka": "Georgian",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "la": "Latin", "lb": "Luxembourgish",
    "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian", "mg": "Malagasy", "mi": "Maori",
    "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "mt": "Maltese",
    "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian", "oc": "Occitan",
    "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sa": "Sanskrit", "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sn": "Shona",
    "so": "Somali", "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Tagalog", "tr": "Turkish",
    "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "yi": "Yiddish",
    "yo": "Yoruba", "zh": "Chinese (Mandarin)", "yue": "Cantonese",
}
LANGUAGE_NAMES_ZH = {
    "ar": "阿拉伯语", "cs": "捷克语", "da": "丹麦语", "de": "德语", "el": "希腊语", "en": "英语", "es": "西班牙语",
    "fa": "波斯语", "fi": "芬兰语", "fil": "菲律宾语", "fr": "法语", "he": "希伯来语", "hi": "印地语", "hu": "匈牙利语",
    "id": "印尼语", "it": "意大利语", "ja": "日语", "ko": "韩语", "mk": "马其顿语", "ms": "马来语", "nl": "荷兰语",
    "no": "挪威语", "pl": "波兰语", "pt": "葡萄牙语", "ro": "罗马尼亚语", "ru": "俄语", "sv": "瑞典语", "th": "泰语",
    "tr": "土耳其语", "uk": "乌克兰语", "vi": "越南语", "zh": "中文（普通话）", "yue": "粤语",
}


def language_name(code: str, lang: str = "en") -> str:
    if lang == "zh" and code in LANGUAGE_NAMES_ZH:
        return LANGUAGE_NAMES_ZH[code]
    return LANGUAGE_NAMES_EN.get(code, code)


def pick(accept_language: str | None, cookie: str | None = None) -> str:
    """``en`` or ``zh``: the switch's cookie first, then the best ``Accept-Language`` match."""
    if cookie in UI_LANGUAGES:
        return cookie
    best, best_q = "en", -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.split("-")[0]
        if primary not in UI_LANGUAGES or q <= 0:
            continue
        q -= position * 1e-6  # equal weights: the earlier wins
        if q > best_q:
            best, best_q = primary, q
    return best


class Messages:
    def __init__(self, lang: str):
        self.lang = lang if lang in UI_LANGUAGES else "en"
        self.table = MESSAGES[self.lang]

    def __call__(self, key: str, **fields: object) -> str:
        text = self.table.get(key) or MESSAGES["en"].get(key) or key
        return text.format(**fields) if fields else text
