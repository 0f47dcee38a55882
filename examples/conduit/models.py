"""Ordinary Peewee models: no database is bound to them; the manager runs their queries."""

from __future__ import annotations

import datetime

import peewee


def utcnow() -> datetime.datetime:
    """Naive UTC, the same on every backend (SQLite has no time zones)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class BaseModel(peewee.Model):
    class Meta:
        # Index names start with the table name (not the class name), so that two table
        # prefixes in one PostgreSQL schema do not fight over "user_email" and friends.
        legacy_table_names = False


class User(BaseModel):
    id = peewee.AutoField()
    username = peewee.CharField(max_length=64, unique=True)
    email = peewee.CharField(max_length=254, unique=True)
    password_hash = peewee.CharField(max_length=256)
    bio = peewee.TextField(default="")
    image = peewee.TextField(default="")


class Follow(BaseModel):
    id = peewee.AutoField()
    follower = peewee.ForeignKeyField(User, on_delete="CASCADE")
    followee = peewee.ForeignKeyField(User, on_delete="CASCADE")

    class Meta:
        indexes = ((("follower", "followee"), True),)


class Article(BaseModel):
    id = peewee.AutoField()
    slug = peewee.CharField(max_length=255, unique=True)
    title = peewee.CharField(max_length=255)
    description = peewee.TextField()
    body = peewee.TextField()
    author = peewee.ForeignKeyField(User, on_delete="CASCADE")
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class Tag(BaseModel):
    id = peewee.AutoField()
    name = peewee.CharField(max_length=64, unique=True)


class ArticleTag(BaseModel):
    id = peewee.AutoField()  # also keeps the order in which the author listed the tags
    article = peewee.ForeignKeyField(Article, on_delete="CASCADE")
    tag = peewee.ForeignKeyField(Tag, on_delete="CASCADE")

    class Meta:
        indexes = ((("article", "tag"), True),)


class Favorite(BaseModel):
    id = peewee.AutoField()
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    article = peewee.ForeignKeyField(Article, on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "article"), True),)


class Comment(BaseModel):
    id = peewee.AutoField()
    article = peewee.ForeignKeyField(Article, on_delete="CASCADE")
    author = peewee.ForeignKeyField(User, on_delete="CASCADE")
    body = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


MODELS: list[type[BaseModel]] = [User, Follow, Article, Tag, ArticleTag, Favorite, Comment]
_BASE_NAMES: dict[type[BaseModel], str] = {
    User: "user",
    Follow: "follow",
    Article: "article",
    Tag: "tag",
    ArticleTag: "article_tag",
    Favorite: "favorite",
    Comment: "comment",
}


def use_table_prefix(prefix: str) -> None:
    """Name every table ``prefix + name`` (e.g. ``cx_article``). Call before the first query."""
    for model, name in _BASE_NAMES.items():
        model._meta.set_table_name(f"{prefix}{name}")
