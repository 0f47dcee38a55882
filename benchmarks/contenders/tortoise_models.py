"""The Tortoise model (Tortoise discovers models by module path)."""

from tortoise import fields
from tortoise.models import Model

from .. import settings


class Item(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    value = fields.IntField()

    class Meta:
        table = settings.TABLE
