"""Models to the spec's JSON shapes (``User``, ``Profile``, ``Article``, ``Comment``)."""

from __future__ import annotations

import datetime
from typing import Any

from .models import Article, Comment, User


def iso(moment: datetime.datetime) -> str:
    """``2016-02-18T03:22:56.637Z``: UTC, milliseconds, as RealWorld clients expect."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def user_json(user: User, token: str) -> dict[str, Any]:
    return {
        "user": {
            "email": user.email,
            "token": token,
            "username": user.username,
            "bio": user.bio or "",
            "image": user.image or "",
        }
    }


def profile(user: User, following: bool) -> dict[str, Any]:
    return {
        "username": user.username,
        "bio": user.bio or "",
        "image": user.image or "",
        "following": following,
    }


def article(
    item: Article, *, tags: list[str], favorited: bool, favorites: int, following: bool, body: bool = True
) -> dict[str, Any]:
    """One article; lists leave the body out (``MultipleArticlesResponse`` has none)."""
    result: dict[str, Any] = {
        "slug": item.slug,
        "title": item.title,
        "description": item.description,
    }
    if body:
        result["body"] = item.body
    result.update(
        {
            "tagList": tags,
            "createdAt": iso(item.created_at),
            "updatedAt": iso(item.updated_at),
            "favorited": favorited,
            "favoritesCount": favorites,
            "author": profile(item.author, following),
        }
    )
    return result


def comment(item: Comment, *, following: bool) -> dict[str, Any]:
    return {
        "id": item.id,
        "createdAt": iso(item.created_at),
        "updatedAt": iso(item.updated_at),
        "body": item.body,
        "author": profile(item.author, following),
    }
