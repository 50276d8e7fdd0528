"""Ceph's ``OSDMap``, ``OSDMapIncremental`` and ``CRUSHMap`` views for mgr
modules (balancer, pg_autoscaler, progress use them).

A view is taken at one point in time from the mgr's documents:
``osd_map`` (``osd dump``), ``osd_map_crush`` (``osd crush dump``) and
``pg_mappings`` (the up/acting set of every PG, which the mgr computes with
CRUSH when the map arrives). Every method answers from that snapshot, so an
old view keeps answering for its own epoch, as Ceph's do.

Limits (said where they apply): an incremental built by a module is applied
to the dump (weights, reweights), but PG mappings are not recomputed for such
a hypothetical map, and ``calc_pg_upmaps`` proposes no upmap changes.
"""

import copy
from typing import Any, Dict, List, Optional

# CRUSH weights are 16.16 fixed point in the dump.
_WEIGHT_ONE = 0x10000


class CRUSHMap:
    """Read-only view of ``osd crush dump``."""

    ITEM_NONE = 0x7fffffff
    DEFAULT_CHOOSE_ARGS = "-1"

    def __init__(self, dump: Dict[str, Any]):
        self._dump = dump or {}
        self._buckets = {b["id"]: b for b in self._dump.get("buckets", [])}
        self._names = {b["id"]: b.get("name") for b in self._dump.get("buckets", [])}
        for d in self._dump.get("devices", []):
            self._names[d["id"]] = d.get("name")

    def dump(self) -> Dict[str, Any]:
        return self._dump

    def get_item_name(self, item: int) -> Optional[str]:
        return self._names.get(item)

    def get_item_weight(self, item: int) -> Optional[float]:
        """The item's weight in its parent bucket, as a float (Ceph's
        ``get_item_weightf``); None if no bucket holds it."""
        for b in self._buckets.values():
            for i in b.get("items", []):
                if i["id"] == item:
                    return i.get("weight", 0) / float(_WEIGHT_ONE)
        return None

    def find_takes(self) -> List[int]:
        """Items that some rule starts from (its ``take`` steps)."""
        out = set()
        for r in self._dump.get("rules", []):
            for s in r.get("steps", []):
                if s.get("op") == "take":
                    out.add(s["item"])
        return sorted(out)

    def find_roots(self) -> List[int]:
        inner = {i["id"] for b in self._buckets.values() for i in b.get("items", [])}
        return sorted(b for b in self._buckets if b not in inner)

    def _weights_under(self, item: int, out: Dict[int, float]) -> float:
        b = self._buckets.get(item)
        if b is None:
            return 0.0
        total = 0.0
        for i in b.get("items", []):
            if i["id"] >= 0:
                w = i.get("weight", 0) / float(_WEIGHT_ONE)
                out[i["id"]] = out.get(i["id"], 0.0) + w
                total += w
            else:
                total += self._weights_under(i["id"], out)
        return total

    def get_take_weight_osd_map(self, root: int) -> Dict[int, float]:
        """Each OSD under ``root`` with its share of the root's CRUSH weight
        (the shares sum to 1)."""
        raw: Dict[int, float] = {}
        total = self._weights_under(root, raw)
        if total <= 0:
            return {osd: 0.0 for osd in raw}
        return {osd: w / total for osd, w in raw.items()}

    def get_osds_under(self, root_id: int) -> List[int]:
        out: Dict[int, float] = {}
        self._weights_under(root_id, out)
        return sorted(out)

    def get_rule(self, rule_name: str) -> Optional[Dict[str, Any]]:
        for r in self._dump.get("rules", []):
            if r.get("rule_name") == rule_name:
                return r
        return None

    def get_rule_by_id(self, rule_id: int) -> Optional[Dict[str, Any]]:
        for r in self._dump.get("rules", []):
            if r.get("rule_id") == rule_id:
                return r
        return None

    def get_rule_root(self, rule_name: str) -> Optional[int]:
        rule = self.get_rule(rule_name)
        for s in (rule or {}).get("steps", []):
            if s.get("op") == "take":
                return s["item"]
        return None

    def device_class_counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for d in self._dump.get("devices", []):
            c = d.get("class")
            if c:
                out[c] = out.get(c, 0) + 1
        return out

    @staticmethod
    def have_default_choose_args(dump: Dict[str, Any]) -> bool:
        return CRUSHMap.DEFAULT_CHOOSE_ARGS in dump.get("choose_args", {})

    @staticmethod
    def get_default_choose_args(dump: Dict[str, Any]) -> List[Dict[str, Any]]:
        return dump.get("choose_args", {}).get(CRUSHMap.DEFAULT_CHOOSE_ARGS, [])


class OSDMapIncremental:
    """Changes a module proposes (balancer plans): OSD reweights and
    crush-compat weight-set weights. ``dump()`` has Ceph's keys."""

    def __init__(self, epoch: int):
        self._epoch = epoch
        self._new_weight: Dict[int, float] = {}
        self._compat_weights: Dict[str, float] = {}

    def get_epoch(self) -> int:
        return self._epoch

    def dump(self) -> Dict[str, Any]:
        return {
            "epoch": self._epoch,
            "new_weight": [{"osd": o, "weight": w} for o, w in sorted(self._new_weight.items())],
            "crush_compat_weight_set_weights": dict(self._compat_weights),
            "new_pg_upmap_items": [],
            "old_pg_upmap_items": [],
        }

    def set_osd_reweights(self, weightmap: Dict[int, float]) -> None:
        self._new_weight.update({int(k): float(v) for k, v in weightmap.items()})

    def set_crush_compat_weight_set_weights(self, weightmap: Dict[str, float]) -> None:
        self._compat_weights.update({str(k): float(v) for k, v in weightmap.items()})


class OSDMap:
    """Read-only view of one OSDMap epoch."""

    def __init__(self, dump: Dict[str, Any], crush: Optional[Dict[str, Any]] = None,
                 mappings: Optional[Dict[str, Any]] = None):
        self._dump = dump or {}
        self._crush_dump = crush or {}
        self._mappings = (mappings or {}).get("pgs", {})

    def get_epoch(self) -> int:
        return self._dump.get("epoch", 0)

    def get_crush_version(self) -> int:
        return self._dump.get("crush_version", self.get_epoch())

    def dump(self) -> Dict[str, Any]:
        return self._dump

    def get_pools(self) -> Dict[int, Dict[str, Any]]:
        return {p["pool"]: p for p in self._dump.get("pools", [])}

    def get_pools_by_name(self) -> Dict[str, Dict[str, Any]]:
        return {p["pool_name"]: p for p in self._dump.get("pools", [])}

    def get_crush(self) -> CRUSHMap:
        return CRUSHMap(self._crush_dump)

    def get_require_osd_release(self) -> str:
        return self._dump.get("require_osd_release") or "pacific"

    def get_ec_profile(self, name: str) -> Optional[Dict[str, str]]:
        return self._dump.get("erasure_code_profiles", {}).get(name)

    def get_pools_by_take(self, take: int) -> List[int]:
        crush = self.get_crush()
        out = []
        for p in self._dump.get("pools", []):
            rule = crush.get_rule_by_id(p.get("crush_rule", 0))
            for s in (rule or {}).get("steps", []):
                if s.get("op") == "take" and s["item"] == take:
                    out.append(p["pool"])
                    break
        return out

    def pool_raw_used_rate(self, pool_id: int) -> float:
        """Raw bytes stored per byte written: the size of a replicated
        pool, (k+m)/k of an erasure-coded one."""
        p = self.get_pools().get(pool_id)
        if p is None:
            return 1.0
        profile = self.get_ec_profile(p.get("erasure_code_profile") or "")
        if p.get("type") == 3 and profile:
            k, m = float(profile.get("k", 1)), float(profile.get("m", 0))
            return (k + m) / k if k else 1.0
        return float(p.get("size", 1))

    def map_pool_pgs_up(self, poolid: int) -> Dict[str, List[int]]:
        prefix = "%d." % poolid
        return {pgid: list(m["up"]) for pgid, m in self._mappings.items() if pgid.startswith(prefix)}

    def pg_to_up_acting_osds(self, pool_id: int, ps: int) -> Dict[str, Any]:
        m = self._mappings.get("%d.%x" % (pool_id, ps))
        if m is None:
            return {"up": [], "acting": [], "up_primary": -1, "acting_primary": -1}
        return {"up": list(m["up"]), "acting": list(m["acting"]),
                "up_primary": m["up_primary"], "acting_primary": m["acting_primary"]}

    def new_incremental(self) -> OSDMapIncremental:
        return OSDMapIncremental(self.get_epoch() + 1)

    def apply_incremental(self, inc: OSDMapIncremental) -> "OSDMap":
        """The dump with the incremental's reweights applied. PG mappings
        stay those of this epoch (Kalmar does not run CRUSH for a
        hypothetical map from Python)."""
        dump = copy.deepcopy(self._dump)
        dump["epoch"] = inc.get_epoch()
        reweights = {o["osd"]: o["weight"] for o in inc.dump()["new_weight"]}
        for o in dump.get("osds", []):
            if o["osd"] in reweights:
                o["weight"] = reweights[o["osd"]]
        return OSDMap(dump, self._crush_dump, {"pgs": self._mappings})

    def calc_pg_upmaps(self, inc: OSDMapIncremental, max_deviation: int,
                       max_iterations: int = 10, pools: Optional[List[str]] = None) -> int:
        """Kalmar's mgr does not optimise upmaps yet: no change proposed."""
        return 0
