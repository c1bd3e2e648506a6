def membership(request):
    user = getattr(request, "user", None)
    return {"membership": getattr(user, "membership", None) if user and user.is_authenticated else None}
