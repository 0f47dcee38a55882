"""Request bodies, as the spec's ``requestBodies`` describe them (validated by FastAPI)."""

from __future__ import annotations

from pydantic import BaseModel


class LoginUser(BaseModel):
    email: str
    password: str


class LoginUserRequest(BaseModel):
    user: LoginUser


class NewUser(BaseModel):
    username: str
    email: str
    password: str


class NewUserRequest(BaseModel):
    user: NewUser


class UpdateUser(BaseModel):
    email: str | None = None
    password: str | None = None
    username: str | None = None
    bio: str | None = None
    image: str | None = None


class UpdateUserRequest(BaseModel):
    user: UpdateUser


class NewArticle(BaseModel):
    title: str
    description: str
    body: str
    tagList: list[str] | None = None  # the spec's name


class NewArticleRequest(BaseModel):
    article: NewArticle


class UpdateArticle(BaseModel):
    title: str | None = None
    description: str | None = None
    body: str | None = None


class UpdateArticleRequest(BaseModel):
    article: UpdateArticle


class NewComment(BaseModel):
    body: str


class NewCommentRequest(BaseModel):
    comment: NewComment
