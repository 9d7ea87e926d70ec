"""Sites, by kind: where prompt vectors enter the model. A new site is one module plus one line below."""

from softprompt.sites.adaption import AdaptionSite
from softprompt.sites.base import SITES, Flow, Site, SiteConfig, build_site, check_site, register
from softprompt.sites.embeddings import EmbeddingSite
from softprompt.sites.kv import KVSite
from softprompt.sites.layer import LayerSite
from softprompt.sites.propagate import PropagateSite

register(EmbeddingSite)
register(LayerSite)
register(KVSite)
register(AdaptionSite)
register(PropagateSite)

__all__ = ["SITES", "AdaptionSite", "EmbeddingSite", "Flow", "KVSite", "LayerSite", "PropagateSite", "Site", "SiteConfig", "build_site", "check_site", "register"]
