"""The Conduit endpoints (``/api/...``), as ``openapi.yml`` describes them.

Where queries run is decided by the aiopeewee_dist middleware, not here: GETs read from a
replica (or from the primary when the client's consistency token says it just wrote), every
other method runs on the primary. Handlers are ordinary async code over Peewee models.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from typing import Annotated, Any

import peewee
from fastapi import APIRouter, Depends, Query, Request, Response

from aiopeewee_dist import Manager
from aiopeewee_dist.integrations.fastapi import ManagerDep

from . import serializers
from .auth import check_password, hash_password, make_token, read_token
from .errors import ApiError, forbidden, invalid, not_found, unauthorized
from .models import Article, ArticleTag, Comment, Favorite, Follow, Tag, User, utcnow
from .schemas import (
    LoginUserRequest,
    NewArticleRequest,
    NewCommentRequest,
    NewUserRequest,
    UpdateArticleRequest,
    UpdateUserRequest,
)
from .settings import Settings

router = APIRouter(prefix="/api")


# -- authentication ---------------------------------------------------------------------------


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.conduit_settings
    return settings


class Auth:
    """The authenticated user of a request and the token that proved it."""

    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.token = token


async def optional_auth(request: Request, db: ManagerDep) -> Auth | None:
    """``Authorization: Token <jwt>`` (``Bearer`` accepted too). No header: anonymous;
    a header that does not prove a user: 401, even where auth is optional."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() not in ("token", "bearer") or not token:
        raise unauthorized("authorization header must be 'Token <jwt>'")
    user_id = read_token(token, secret=get_settings(request).jwt_secret)
    user = await db.get_or_none(User, id=user_id) if user_id is not None else None
    if user is None:
        raise unauthorized("invalid or expired token")
    return Auth(user, token)


async def required_auth(auth: Annotated[Auth | None, Depends(optional_auth)]) -> Auth:
    if auth is None:
        raise unauthorized()
    return auth


OptionalAuth = Annotated[Auth | None, Depends(optional_auth)]
RequiredAuth = Annotated[Auth, Depends(required_auth)]


def _token_for(request: Request, user: User) -> str:
    settings = get_settings(request)
    return make_token(user.id, user.username, secret=settings.jwt_secret, ttl=settings.jwt_ttl)


def _require(field: str, value: str | None) -> str:
    """A required, non-blank string (422 "can't be blank" otherwise)."""
    if value is None or not value.strip():
        raise invalid(field, "can't be blank")
    return value.strip()


async def _taken(db: Manager, field: peewee.Field, value: str, exclude: int | None = None) -> bool:
    query = User.select().where(field == value)
    if exclude is not None:
        query = query.where(User.id != exclude)
    return bool(await db.exists(query))


# -- users ------------------------------------------------------------------------------------


@router.post("/users", status_code=201)
async def register(payload: NewUserRequest, request: Request, db: ManagerDep) -> dict[str, Any]:
    username = _require("username", payload.user.username)
    email = _require("email", payload.user.email)
    password = _require("password", payload.user.password)
    # A POST runs on the primary, so these checks see every committed user.
    if await _taken(db, User.username, username):
        raise invalid("username", "has already been taken")
    if await _taken(db, User.email, email):
        raise invalid("email", "has already been taken")
    try:
        user = await db.create(
            User, username=username, email=email, password_hash=await hash_password(password)
        )
    except peewee.IntegrityError:  # a concurrent registration won the race
        raise invalid("username", "has already been taken") from None
    return serializers.user_json(user, _token_for(request, user))


@router.post("/users/login")
async def login(payload: LoginUserRequest, request: Request, db: ManagerDep) -> dict[str, Any]:
    email = _require("email", payload.user.email)
    password = _require("password", payload.user.password)
    user = await db.get_or_none(User, email=email)
    if user is None or not await check_password(password, user.password_hash):
        raise unauthorized("email or password is invalid")
    return serializers.user_json(user, _token_for(request, user))


@router.get("/user")
async def current_user(auth: RequiredAuth) -> dict[str, Any]:
    return serializers.user_json(auth.user, auth.token)


@router.put("/user")
async def update_user(
    payload: UpdateUserRequest, request: Request, auth: RequiredAuth, db: ManagerDep
) -> dict[str, Any]:
    changes: dict[Any, Any] = {}
    data = payload.user
    if data.username is not None:
        username = _require("username", data.username)
        if await _taken(db, User.username, username, exclude=auth.user.id):
            raise invalid("username", "has already been taken")
        changes[User.username] = username
    if data.email is not None:
        email = _require("email", data.email)
        if await _taken(db, User.email, email, exclude=auth.user.id):
            raise invalid("email", "has already been taken")
        changes[User.email] = email
    if data.password is not None:
        changes[User.password_hash] = await hash_password(_require("password", data.password))
    if data.bio is not None:
        changes[User.bio] = data.bio
    if data.image is not None:
        changes[User.image] = data.image
    if changes:
        try:
            await db.execute(User.update(changes).where(User.id == auth.user.id))
        except peewee.IntegrityError:
            raise invalid("username", "has already been taken") from None
    user = await db.get(User, id=auth.user.id)
    return serializers.user_json(user, _token_for(request, user))


# -- profiles ---------------------------------------------------------------------------------


async def _user_named(db: Manager, username: str) -> User:
    user = await db.get_or_none(User, username=username)
    if user is None:
        raise not_found("profile")
    return user


async def _follows(db: Manager, follower: User | None, followee: User) -> bool:
    if follower is None:
        return False
    return bool(
        await db.exists(Follow.select().where(Follow.follower == follower.id, Follow.followee == followee.id))
    )


@router.get("/profiles/{username}")
async def get_profile(username: str, auth: OptionalAuth, db: ManagerDep) -> dict[str, Any]:
    user = await _user_named(db, username)
    following = await _follows(db, auth.user if auth else None, user)
    return {"profile": serializers.profile(user, following)}


@router.post("/profiles/{username}/follow")
async def follow(username: str, auth: RequiredAuth, db: ManagerDep) -> dict[str, Any]:
    user = await _user_named(db, username)
    if user.id == auth.user.id:
        raise invalid("username", "cannot follow yourself")
    if not await _follows(db, auth.user, user):
        with contextlib.suppress(peewee.IntegrityError):  # followed concurrently: same outcome
            await db.create(Follow, follower=auth.user.id, followee=user.id)
    return {"profile": serializers.profile(user, True)}


@router.delete("/profiles/{username}/follow")
async def unfollow(username: str, auth: RequiredAuth, db: ManagerDep) -> dict[str, Any]:
    user = await _user_named(db, username)
    await db.execute(Follow.delete().where(Follow.follower == auth.user.id, Follow.followee == user.id))
    return {"profile": serializers.profile(user, False)}


# -- articles ---------------------------------------------------------------------------------


def _articles() -> peewee.ModelSelect:
    # Author selected in the same query: ``article.author`` never triggers a lazy (sync) query.
    return Article.select(Article, User).join(User, on=(Article.author == User.id))


async def _render(
    db: Manager, items: list[Article], viewer: User | None, *, body: bool
) -> list[dict[str, Any]]:
    """Articles with their tags, favorite counts and the viewer's flags: four queries for a page."""
    if not items:
        return []
    ids = [item.id for item in items]
    tags: dict[int, list[str]] = {}
    tag_rows = await db.execute(
        ArticleTag.select(ArticleTag.article, Tag.name)
        .join(Tag, on=(ArticleTag.tag == Tag.id))
        .where(ArticleTag.article.in_(ids))
        .order_by(ArticleTag.id)
        .tuples()
    )
    for article_id, name in tag_rows:
        tags.setdefault(article_id, []).append(name)
    # RealWorld's clients (and its Postman collection) expect tagList in alphabetical order;
    # sorted here, not by the server's collation, so every backend gives the same order.
    for names in tags.values():
        names.sort()
    counts = dict(
        await db.execute(
            Favorite.select(Favorite.article, peewee.fn.COUNT(Favorite.id))
            .where(Favorite.article.in_(ids))
            .group_by(Favorite.article)
            .tuples()
        )
    )
    favorited: set[int] = set()
    following: set[int] = set()
    if viewer is not None:
        rows = await db.execute(
            Favorite.select(Favorite.article)
            .where(Favorite.user == viewer.id, Favorite.article.in_(ids))
            .tuples()
        )
        favorited = {row[0] for row in rows}
        authors = list({item.author.id for item in items})
        rows = await db.execute(
            Follow.select(Follow.followee)
            .where(Follow.follower == viewer.id, Follow.followee.in_(authors))
            .tuples()
        )
        following = {row[0] for row in rows}
    return [
        serializers.article(
            item,
            tags=tags.get(item.id, []),
            favorited=item.id in favorited,
            favorites=int(counts.get(item.id, 0)),
            following=item.author.id in following,
            body=body,
        )
        for item in items
    ]


async def _one(db: Manager, item: Article, viewer: User | None) -> dict[str, Any]:
    [rendered] = await _render(db, [item], viewer, body=True)
    return {"article": rendered}


async def _article(db: Manager, slug: str) -> Article:
    found = await db.execute(_articles().where(Article.slug == slug))
    if not found:
        raise not_found("article")
    item: Article = found[0]
    return item


async def _page(
    db: Manager, query: peewee.ModelSelect, viewer: User | None, limit: int, offset: int
) -> dict[str, Any]:
    total = await db.count(query)
    items = await db.execute(
        query.order_by(Article.created_at.desc(), Article.id.desc()).limit(limit).offset(offset)
    )
    return {"articles": await _render(db, items, viewer, body=False), "articlesCount": total}


Limit = Annotated[int, Query(ge=1)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/articles/feed")
async def feed(auth: RequiredAuth, db: ManagerDep, limit: Limit = 20, offset: Offset = 0) -> dict[str, Any]:
    followed = Follow.select(Follow.followee).where(Follow.follower == auth.user.id)
    return await _page(db, _articles().where(Article.author.in_(followed)), auth.user, limit, offset)


@router.get("/articles")
async def list_articles(
    auth: OptionalAuth,
    db: ManagerDep,
    tag: str | None = None,
    author: str | None = None,
    favorited: str | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    query = _articles()
    if tag is not None:
        tagged = (
            ArticleTag.select(ArticleTag.article)
            .join(Tag, on=(ArticleTag.tag == Tag.id))
            .where(Tag.name == tag)
        )
        query = query.where(Article.id.in_(tagged))
    if author is not None:
        query = query.where(User.username == author)
    if favorited is not None:
        fans = User.alias()
        liked = (
            Favorite.select(Favorite.article)
            .join(fans, on=(Favorite.user == fans.id))
            .where(fans.username == favorited)
        )
        query = query.where(Article.id.in_(liked))
    return await _page(db, query, auth.user if auth else None, limit, offset)


def _slugify(title: str) -> str:
    slug = re.sub(r"[\W_]+", "-", title.lower()).strip("-")
    return slug[:200] or "article"


async def _unique_slug(db: Manager, title: str, exclude: int | None = None) -> str:
    base = slug = _slugify(title)
    while True:
        query = Article.select().where(Article.slug == slug)
        if exclude is not None:
            query = query.where(Article.id != exclude)
        if not await db.exists(query):
            return slug
        slug = f"{base}-{secrets.token_hex(3)}"


async def _tag(db: Manager, name: str) -> Tag:
    tag = await db.get_or_none(Tag, name=name)
    if tag is not None:
        return tag
    try:
        async with db.transaction():  # a savepoint: a concurrent insert must not abort the outer block
            created: Tag = await db.create(Tag, name=name)
            return created
    except peewee.IntegrityError:
        found: Tag = await db.get(Tag, name=name)
        return found


@router.post("/articles", status_code=201)
async def create_article(payload: NewArticleRequest, auth: RequiredAuth, db: ManagerDep) -> dict[str, Any]:
    data = payload.article
    title = _require("title", data.title)
    description = _require("description", data.description)
    body = _require("body", data.body)
    names = list(dict.fromkeys(name.strip() for name in data.tagList or [] if name.strip()))
    for _ in range(3):  # a slug taken between the check and the insert: try another one
        slug = await _unique_slug(db, title)
        try:
            async with db.transaction():
                item = await db.create(
                    Article, slug=slug, title=title, description=description, body=body, author=auth.user.id
                )
                for name in names:
                    tag = await _tag(db, name)
                    await db.create(ArticleTag, article=item.id, tag=tag.id)
            break
        except peewee.IntegrityError:
            continue
    else:
        raise invalid("title", "could not make a unique slug, try another title")
    return await _one(db, await _article(db, slug), auth.user)


@router.get("/articles/{slug}")
async def get_article(slug: str, auth: OptionalAuth, db: ManagerDep) -> dict[str, Any]:
    return await _one(db, await _article(db, slug), auth.user if auth else None)


async def _own_article(db: Manager, slug: str, user: User) -> Article:
    item = await _article(db, slug)
    if item.author.id != user.id:
        raise forbidden("only the author may change this article")
    return item


@router.put("/articles/{slug}")
async def update_article(
    slug: str, payload: UpdateArticleRequest, auth: RequiredAuth, db: ManagerDep
) -> dict[str, Any]:
    item = await _own_article(db, slug, auth.user)
    data = payload.article
    changes: dict[Any, Any] = {}
    if data.title is not None:
        changes[Article.title] = _require("title", data.title)
        if _slugify(changes[Article.title]) != _slugify(item.title):
            changes[Article.slug] = await _unique_slug(db, changes[Article.title], exclude=item.id)
    if data.description is not None:
        changes[Article.description] = _require("description", data.description)
    if data.body is not None:
        changes[Article.body] = _require("body", data.body)
    if changes:
        changes[Article.updated_at] = utcnow()
        await db.execute(Article.update(changes).where(Article.id == item.id))
    return await _one(db, await _article(db, changes.get(Article.slug, slug)), auth.user)


@router.delete("/articles/{slug}", status_code=204)
async def delete_article(slug: str, auth: RequiredAuth, db: ManagerDep) -> Response:
    item = await _own_article(db, slug, auth.user)
    # Dependents first and explicitly: SQLite enforces ON DELETE CASCADE only with foreign_keys=on.
    async with db.transaction():
        await db.execute(Comment.delete().where(Comment.article == item.id))
        await db.execute(Favorite.delete().where(Favorite.article == item.id))
        await db.execute(ArticleTag.delete().where(ArticleTag.article == item.id))
        await db.execute(Article.delete().where(Article.id == item.id))
    return Response(status_code=204)


# -- favorites --------------------------------------------------------------------------------


@router.post("/articles/{slug}/favorite")
async def favorite(slug: str, auth: RequiredAuth, db: ManagerDep) -> dict[str, Any]:
    item = await _article(db, slug)
    already = Favorite.select().where(Favorite.user == auth.user.id, Favorite.article == item.id)
    if not await db.exists(already):
        with contextlib.suppress(peewee.IntegrityError):  # favorited concurrently: same outcome
            await db.create(Favorite, user=auth.user.id, article=item.id)
    return await _one(db, item, auth.user)


@router.delete("/articles/{slug}/favorite")
async def unfavorite(slug: str, auth: RequiredAuth, db: ManagerDep) -> dict[str, Any]:
    item = await _article(db, slug)
    await db.execute(Favorite.delete().where(Favorite.user == auth.user.id, Favorite.article == item.id))
    return await _one(db, item, auth.user)


# -- comments ---------------------------------------------------------------------------------


def _comments() -> peewee.ModelSelect:
    return Comment.select(Comment, User).join(User, on=(Comment.author == User.id))


async def _render_comments(db: Manager, items: list[Comment], viewer: User | None) -> list[dict[str, Any]]:
    following: set[int] = set()
    if viewer is not None and items:
        authors = list({item.author.id for item in items})
        rows = await db.execute(
            Follow.select(Follow.followee)
            .where(Follow.follower == viewer.id, Follow.followee.in_(authors))
            .tuples()
        )
        following = {row[0] for row in rows}
    return [serializers.comment(item, following=item.author.id in following) for item in items]


@router.get("/articles/{slug}/comments")
async def list_comments(slug: str, auth: OptionalAuth, db: ManagerDep) -> dict[str, Any]:
    item = await _article(db, slug)
    items = await db.execute(_comments().where(Comment.article == item.id).order_by(Comment.id))
    return {"comments": await _render_comments(db, items, auth.user if auth else None)}


@router.post("/articles/{slug}/comments")
async def add_comment(
    slug: str, payload: NewCommentRequest, auth: RequiredAuth, db: ManagerDep
) -> dict[str, Any]:
    item = await _article(db, slug)
    body = _require("body", payload.comment.body)
    created = await db.create(Comment, article=item.id, author=auth.user.id, body=body)
    [rendered] = await _render_comments(
        db, await db.execute(_comments().where(Comment.id == created.id)), auth.user
    )
    return {"comment": rendered}


@router.delete("/articles/{slug}/comments/{comment_id}", status_code=204)
async def delete_comment(slug: str, comment_id: int, auth: RequiredAuth, db: ManagerDep) -> Response:
    item = await _article(db, slug)
    found = await db.get_or_none(Comment, id=comment_id, article=item.id)
    if found is None:
        raise not_found("comment")
    if found.author_id != auth.user.id:
        raise forbidden("only the author may delete this comment")
    await db.execute(Comment.delete().where(Comment.id == comment_id))
    return Response(status_code=204)


# -- tags -------------------------------------------------------------------------------------


@router.get("/tags")
async def tags(db: ManagerDep) -> dict[str, Any]:
    # Tags in use, most used first: a tag whose last article was deleted is not listed.
    uses = peewee.fn.COUNT(ArticleTag.id)
    rows = await db.execute(
        Tag.select(Tag.name)
        .join(ArticleTag, on=(ArticleTag.tag == Tag.id))
        .group_by(Tag.id, Tag.name)
        .order_by(uses.desc(), Tag.name)
        .tuples()
    )
    return {"tags": [row[0] for row in rows]}


__all__ = ["ApiError", "router"]
