"""Injection sites: input embeddings, hidden states at layer m, key/value prefixes."""

from softprompt.sites.base import HiddenSite, KVSite, Site, SiteConfig, build_site

__all__ = ["HiddenSite", "KVSite", "Site", "SiteConfig", "build_site"]
