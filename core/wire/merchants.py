"""The merchants this router serves, with their keys ready to use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from arrears_router.config import KeySet, MerchantConfig
from arrears_router.wire.cipher import AesKey, parse_aes_key
from arrears_router.wire.signature import SignatureError, Signer, SignType, check_sign

__all__ = ["Keys", "Merchant", "MerchantBook"]


@dataclass(frozen=True, slots=True)
class Keys:
    signer: Signer
    aes: AesKey

    @classmethod
    def from_config(cls, keys: KeySet) -> Keys:
        return cls(Signer(keys.sign_key), AesKey(parse_aes_key(keys.aes_key)))


@dataclass(frozen=True, slots=True)
class Merchant:
    appid: str
    mch_id: str
    sign_types: frozenset[SignType]
    keys: tuple[Keys, ...]
    """The current keys first, then those still accepted during a rotation."""

    @classmethod
    def from_config(cls, config: MerchantConfig) -> Merchant:
        return cls(
            appid=config.appid,
            mch_id=config.mch_id,
            sign_types=frozenset(config.sign_types),
            keys=tuple(Keys.from_config(k) for k in (config, *config.previous_keys)),
        )

    def sign_type(self, sign: str) -> SignType:
        """The algorithm ``sign`` was made with, if this merchant accepts it: checked before
        anything is hashed. SignatureError says why not."""
        return check_sign(sign, self.sign_types)

    def verified_keys(self, fields: dict[str, str], sign: str, sign_type: SignType) -> list[Keys]:
        """The key sets whose sign key made ``sign``; SignatureError when none did."""
        matching = [k for k in self.keys if k.signer.verify(fields, sign, sign_type)]
        if not matching:
            raise SignatureError("sign does not match the signed fields")
        return matching


class MerchantBook:
    """Merchants by (appid, mch_id)."""

    def __init__(self, merchants: Iterable[Merchant]) -> None:
        self._by_identity = {(m.appid, m.mch_id): m for m in merchants}

    @classmethod
    def from_config(cls, merchants: Iterable[MerchantConfig]) -> MerchantBook:
        return cls(Merchant.from_config(m) for m in merchants)

    def find(self, appid: str, mch_id: str) -> Merchant | None:
        return self._by_identity.get((appid, mch_id))

    def __iter__(self) -> Iterator[Merchant]:
        return iter(self._by_identity.values())
