"""The PayPal SDK's plumbing that Veix adds: a configurable base URL, a recorder of the
last HTTP status (the SDK hides it when an error body is not JSON), and controllers for
the two calls the SDK has none for (webhook verification, dispute evidence), with the
mapping of a merchant's evidence to PayPal's ``evidences``."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from apimatic_core.authentication.multiple.single_auth import Single
from apimatic_core.request_builder import RequestBuilder
from apimatic_core.response_handler import ResponseHandler
from apimatic_core.types.parameter import Parameter
from paypalserversdk.api_helper import APIHelper
from paypalserversdk.configuration import Configuration, Server
from paypalserversdk.controllers.base_controller import BaseController
from paypalserversdk.exceptions.error_exception import ErrorException
from paypalserversdk.http.http_call_back import HttpCallBack
from paypalserversdk.http.http_method_enum import HttpMethodEnum

NOTES_LIMIT = 2000  # PayPal's maxLength of an evidence's notes
# PayPal's carrier_name values for a dispute's tracking_info; any other carrier is OTHER + carrier_name_other.
CARRIERS = frozenset("""
UPS USPS FEDEX AIRBORNE_EXPRESS DHL AIRSURE ROYAL_MAIL PARCELFORCE SWIFTAIR OTHER UK_PARCELFORCE
UK_ROYALMAIL_SPECIAL UK_ROYALMAIL_RECORDED UK_ROYALMAIL_INT_SIGNED UK_ROYALMAIL_AIRSURE UK_UPS UK_FEDEX
UK_AIRBORNE_EXPRESS UK_DHL UK_OTHER CA_CANADA_POST CA_PUROLATOR CA_CANPAR CA_LOOMIS CA_TNT CA_OTHER
DE_DP_DHL_WITHIN_EUROPE DE_DP_DHL_T_AND_T_EXPRESS DE_DHL_DP_INTL_SHIPMENTS DE_GLS DE_DPD_DELISTACK DE_HERMES
DE_UPS DE_FEDEX DE_TNT DE_OTHER FR_CHRONOPOST FR_COLIPOSTE FR_DHL FR_UPS FR_FEDEX FR_TNT FR_GLS FR_OTHER
IT_POSTE_ITALIA IT_DHL IT_UPS IT_FEDEX IT_TNT IT_GLS IT_OTHER AU_AUSTRALIA_POST_EP_PLAT AU_AUSTRALIA_POST_EPARCEL
AU_AUSTRALIA_POST_EMS AU_DHL AU_STAR_TRACK_EXPRESS AU_UPS AU_FEDEX AU_TNT AU_TOLL_IPEC AU_OTHER FR_SUIVI
IT_EBOOST_SDA ES_CORREOS_DE_ESPANA ES_DHL ES_UPS ES_FEDEX ES_TNT ES_OTHER AT_AUSTRIAN_POST_EMS
AT_AUSTRIAN_POST_PPRIME BE_CHRONOPOST BE_TAXIPOST CH_SWISS_POST_EXPRES CH_SWISS_POST_PRIORITY CN_CHINA_POST
HK_HONGKONG_POST IE_AN_POST_SDS_EMS IE_AN_POST_SDS_PRIORITY IE_AN_POST_REGISTERED IE_AN_POST_SWIFTPOST
IN_INDIAPOST JP_JAPANPOST KR_KOREA_POST NL_TPG SG_SINGPOST TW_CHUNGHWA_POST CN_CHINA_POST_EMS CN_FEDEX CN_TNT
CN_UPS CN_OTHER NL_TNT NL_DHL NL_UPS NL_FEDEX NL_KIALA BE_KIALA PL_POCZTA_POLSKA PL_POCZTEX PL_GLS
PL_MASTERLINK PL_TNT PL_DHL PL_UPS PL_FEDEX JP_SAGAWA_KYUU_BIN JP_NITTSU_PELICAN_BIN JP_KURO_NEKO_YAMATO_UNYUU
JP_TNT JP_DHL JP_UPS JP_FEDEX NL_PICKUP NL_INTANGIBLE NL_ABC_MAIL HK_FOUR_PX_EXPRESS HK_FLYT_EXPRESS
""".split()) - {"OTHER"}


class BaseUrlConfiguration(Configuration):  # type: ignore[misc]
    """The SDK's configuration pointed at any base URL (the SDK only knows live and sandbox)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        self._base_url = base_url.rstrip("/")
        super().__init__(**kwargs)

    def get_base_uri(self, server: Server = Server.DEFAULT) -> str:
        return self._base_url


class StatusRecorder(HttpCallBack):  # type: ignore[misc]
    """Remembers, per worker thread, the HTTP status of the last response the SDK received."""

    def __init__(self) -> None:
        self._local = threading.local()

    def reset(self) -> None:
        self._local.status = None

    @property
    def status(self) -> int | None:
        return getattr(self._local, "status", None)

    def on_before_request(self, request: Any) -> None:
        self._local.status = None

    def on_after_response(self, http_response: Any) -> None:
        self._local.status = http_response.status_code


def _json_response() -> Any:
    """How the SDK's own controllers read a PayPal answer: JSON, as an ApiResponse, errors as ErrorException."""
    return (ResponseHandler().deserializer(APIHelper.json_deserialize).is_api_response(True)
            .local_error("default", "The error response.", ErrorException))


class NotificationsController(BaseController):  # type: ignore[misc]
    """``POST /v1/notifications/verify-webhook-signature``, which the SDK has no controller for."""

    def verify_webhook_signature(self, body: str) -> Any:
        # The body is passed through as is: it embeds the webhook event exactly as PayPal sent it.
        return self.new_api_call_builder.request(
            RequestBuilder().server(Server.DEFAULT)
            .path("/v1/notifications/verify-webhook-signature")
            .http_method(HttpMethodEnum.POST)
            .header_param(Parameter().key("Content-Type").value("application/json"))
            .header_param(Parameter().key("accept").value("application/json"))
            .body_param(Parameter().value(body))
            .body_serializer(lambda value: value)
            .auth(Single("Oauth2")),
        ).response(_json_response()).execute()


class DisputesController(BaseController):  # type: ignore[misc]
    """``POST /v1/customer/disputes/{id}/provide-evidence``, which the SDK has no controller for."""

    def provide_evidence(self, dispute_id: str, evidence_input: str) -> Any:
        # A multipart parameter that is a str becomes a part without a filename; requests writes
        # the multipart/form-data Content-Type (with its boundary) itself, so none is set here.
        return self.new_api_call_builder.request(
            RequestBuilder().server(Server.DEFAULT)
            .path("/v1/customer/disputes/{id}/provide-evidence")
            .http_method(HttpMethodEnum.POST)
            .template_param(Parameter().key("id").value(dispute_id).should_encode(True))
            .multipart_param(Parameter().key("input").value(evidence_input)
                             .default_content_type("application/json"))
            .header_param(Parameter().key("accept").value("application/json"))
            .auth(Single("Oauth2")),
        ).response(_json_response()).execute()


def dispute_evidences(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The merchant's free-form evidence as PayPal ``evidences``.

    A tracking number with its carrier is a ``PROOF_OF_FULFILLMENT`` (PayPal requires both);
    everything else goes, as JSON, into the notes of an ``OTHER`` evidence (2000 characters at most).
    """
    rest = dict(evidence)
    evidences: list[dict[str, Any]] = []
    tracking_number = str(rest.get("tracking_number") or "").strip()
    carrier = str(rest.get("carrier") or "").strip()
    if tracking_number and carrier:
        del rest["tracking_number"], rest["carrier"]
        code = "_".join("".join(c if c.isalnum() else " " for c in carrier.upper()).split())
        tracking: dict[str, str] = {"tracking_number": tracking_number[:255]}
        if code in CARRIERS:
            tracking["carrier_name"] = code
        else:
            tracking |= {"carrier_name": "OTHER", "carrier_name_other": carrier[:2000]}
        evidences.append({"evidence_type": "PROOF_OF_FULFILLMENT", "evidence_info": {"tracking_info": [tracking]}})
    if rest:
        notes = json.dumps(rest, ensure_ascii=False, default=str)
        if len(notes) > NOTES_LIMIT:
            notes = notes[:NOTES_LIMIT - 1] + "\u2026"
        evidences.append({"evidence_type": "OTHER", "notes": notes})
    return evidences
